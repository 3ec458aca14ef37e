"""CartPole (reference): keep the pole upright and the cart near the centre."""

PARAMS = {"angle_limit": 0.21, "position_limit": 2.4, "centre_weight": 0.5}


def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    centred = 1.0 - xp.abs(s_next.cart_position) / p["position_limit"]
    return upright + p["centre_weight"] * centred, {"upright": upright, "centred": centred}
