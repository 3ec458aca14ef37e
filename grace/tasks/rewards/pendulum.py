"""Pendulum (reference): upright, still, and with little effort."""

PARAMS = {"velocity_weight": 0.1}


def reward(s, a, s_next, p):
    angle = xp.arctan2(s_next.sin_theta, s_next.cos_theta)
    upright = -(angle**2)
    still = -p["velocity_weight"] * s_next.angular_velocity**2
    return upright + still, {"upright": upright, "still": still}
