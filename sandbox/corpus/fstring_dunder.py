# expect: forbidden
# f-strings are parsed: the attribute inside is checked like any other.
def reward(s, a, s_next, p):
    leak = f"{s.__class__}"
    return 0.0
