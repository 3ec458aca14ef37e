# expect: runtime
# out= would write into arrays reward code does not own.
def reward(s, a, s_next, p):
    xp.abs(s.raw, out=s_next.raw)
    return 0.0
