# expect: syntax
# PARAMS = {"w": 1e999} is inf: invalid JSON downstream, and not a usable weight.
PARAMS = {"w": 1e999}


def reward(s, a, s_next, p):
    return p["w"] * s_next.pole_angle
