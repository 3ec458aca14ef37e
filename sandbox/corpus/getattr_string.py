# expect: forbidden
# getattr with a computed name.
def reward(s, a, s_next, p):
    return getattr(s, "__cl" + "ass__")
