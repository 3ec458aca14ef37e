# expect: forbidden
# eval/exec/compile are refused.
def reward(s, a, s_next, p):
    eval("1 + 1")
    exec("x = 1")
    return 0.0
