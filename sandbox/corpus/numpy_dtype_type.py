# expect: forbidden
# dtype.type gives a class; not on the allow-list.
def reward(s, a, s_next, p):
    cls = s.raw.dtype.type
    return 0.0
