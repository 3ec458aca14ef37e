# expect: memory
# List growth bomb.
def reward(s, a, s_next, p):
    big = [0] * 10**10
    return 0.0
