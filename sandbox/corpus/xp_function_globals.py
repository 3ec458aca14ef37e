# expect: forbidden
# numpy functions carry __globals__ (the numpy module).
def reward(s, a, s_next, p):
    np = xp.abs.__globals__
    return 0.0
