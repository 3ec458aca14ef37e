# expect: bad_return
# NaN/inf are reported, not zeroed.
def reward(s, a, s_next, p):
    return xp.log(s_next.pole_angle * 0.0 - 1.0)
