# expect: memory
# String repetition bomb.
def reward(s, a, s_next, p):
    big = "x" * 10**11
    return 0.0
