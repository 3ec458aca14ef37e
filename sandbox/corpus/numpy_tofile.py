# expect: forbidden
# ndarray.tofile writes files.
def reward(s, a, s_next, p):
    s.raw.tofile("stolen.bin")
    return 0.0
