"""Inverted pendulum (reference): pole upright, cart near the centre."""

PARAMS = {"angle_limit": 0.2, "centre_weight": 0.1}


def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    centred = -p["centre_weight"] * xp.abs(s_next.cart_position)
    return upright + centred, {"upright": upright, "centred": centred}
