# expect: forbidden
# Imports inside functions too.
def reward(s, a, s_next, p):
    import subprocess
    return 0.0
