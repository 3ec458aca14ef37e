# expect: forbidden
# ndarray.base / .data reach the underlying buffer.
def reward(s, a, s_next, p):
    buf = s.raw.base
    return 0.0
