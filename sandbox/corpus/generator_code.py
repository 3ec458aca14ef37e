# expect: forbidden
# gi_code / gi_yieldfrom are dunder-free but reach internals.
def reward(s, a, s_next, p):
    g = (x for x in [1])
    return g.gi_code
