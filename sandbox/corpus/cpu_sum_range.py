# expect: timeout
# Long pure-Python computation.
def reward(s, a, s_next, p):
    return float(sum(range(10**13)))
