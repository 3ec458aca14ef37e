# expect: syntax
# A second PARAMS assignment with computed and non-string keys (crashed the program id).
PARAMS = {"w": 1.0}
PARAMS = {"a" + "b": 1.0, 1: 2.0}


def reward(s, a, s_next, p):
    return p["w"] * s_next.pole_angle
