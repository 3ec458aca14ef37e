# expect: runtime
# Item writes are allowed on dicts/lists/own arrays only.
def reward(s, a, s_next, p):
    xp["abs"] = None
    return 0.0
