# expect: forbidden
# ndarray.ctypes exposes raw memory pointers.
def reward(s, a, s_next, p):
    ptr = s.raw.ctypes.data
    return 0.0
