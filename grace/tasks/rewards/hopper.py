"""Hopper (reference): move forward while staying healthy."""

PARAMS = {"min_height": 0.7, "max_tilt": 0.2, "healthy_bonus": 1.0}


def reward(s, a, s_next, p):
    healthy = xp.where(
        (s_next.torso_height > p["min_height"]) & (xp.abs(s_next.torso_angle) < p["max_tilt"]), 1.0, 0.0
    )
    forward = s_next.forward_velocity
    return forward + p["healthy_bonus"] * healthy, {"forward": forward, "healthy": healthy}
