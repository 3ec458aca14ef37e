# expect: memory
# Array bomb through allowed xp functions.
def reward(s, a, s_next, p):
    one = xp.ones_like(s.raw)
    big = xp.stack([one] * 200000)
    return 0.0
