# expect: forbidden
# Writing to PARAMS through an attribute.
PARAMS = {"w": 1.0}


def reward(s, a, s_next, p):
    PARAMS.w = 2.0
    return 0.0
