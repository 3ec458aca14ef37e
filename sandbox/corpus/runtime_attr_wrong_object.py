# expect: runtime
# `keys` is allowed on dicts only: the run-time guard refuses it on xp functions.
def reward(s, a, s_next, p):
    return xp.sum.keys()
