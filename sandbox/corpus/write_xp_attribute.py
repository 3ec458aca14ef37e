# expect: forbidden
# Attribute writes on foreign objects (poisoning shared xp).
def reward(s, a, s_next, p):
    xp.abs = xp.sign
    return 0.0
