# expect: syntax
# PARAMS keys must be literal strings; a computed key is refused with its line.
PARAMS = {"w" + "2": 1.0}


def reward(s, a, s_next, p):
    return s_next.pole_angle
