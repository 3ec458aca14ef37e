# expect: forbidden
# setattr on a foreign object.
def reward(s, a, s_next, p):
    setattr(xp, "abs", None)
    return 0.0
