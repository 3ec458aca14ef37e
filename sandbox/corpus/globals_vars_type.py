# expect: forbidden
# globals()/vars()/type() tricks.
def reward(s, a, s_next, p):
    b = globals()["__builtins__"]
    return type(s)
