# expect: forbidden
# str.format reaches attributes: '{0.__class__}'.format(x).
def reward(s, a, s_next, p):
    leak = "{0.__class__.__init__.__globals__}".format(s)
    return 0.0
