# expect: forbidden
# __import__ is not a builtin and the name is refused.
def reward(s, a, s_next, p):
    os = __import__("os")
    return 0.0
