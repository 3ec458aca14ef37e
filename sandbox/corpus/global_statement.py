# expect: forbidden
# Rebinding module globals from a function.
def reward(s, a, s_next, p):
    global xp
    xp = None
    return 0.0
