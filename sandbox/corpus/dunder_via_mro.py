# expect: forbidden
# Same walk through __mro__ on a list.
def reward(s, a, s_next, p):
    return [].__class__.__mro__[-1]
