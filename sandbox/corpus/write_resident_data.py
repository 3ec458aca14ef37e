# expect: runtime
# Resident data is read-only: other programs must see it unchanged.
def reward(s, a, s_next, p):
    s.raw[0, 0] = 1e9
    return 0.0
