# expect: bad_return
# %-formatting is harmless; a string reward is a bad return.
def reward(s, a, s_next, p):
    return "%s" % (s,)
