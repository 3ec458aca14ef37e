# expect: forbidden
# Module-level code beyond constants (a call) is refused: only docstring, PARAMS, constants and functions.
TABLE = xp.ones(10)


def reward(s, a, s_next, p):
    return s_next.pole_angle
