# expect: forbidden
# The wrapped numpy function of an xp entry is private.
def reward(s, a, s_next, p):
    fn = xp.sum._fn
    return 0.0
