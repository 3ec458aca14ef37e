# expect: bad_return
# A (B, k) reward does not match the batch.
def reward(s, a, s_next, p):
    return s.raw
