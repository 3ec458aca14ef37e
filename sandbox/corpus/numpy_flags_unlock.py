# expect: forbidden
# Flipping the read-only flag of the resident data.
def reward(s, a, s_next, p):
    s.raw.flags.writeable = True
    return 0.0
