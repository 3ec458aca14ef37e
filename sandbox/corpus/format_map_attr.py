# expect: forbidden
# str.format_map with an attribute path in the field.
def reward(s, a, s_next, p):
    leak = "{x.raw.ctypes}".format_map({"x": s})
    return 0.0
