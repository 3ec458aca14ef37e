# expect: forbidden
# Class patterns read attributes without _getattr_ (case str(format=f)); match is refused.
def reward(s, a, s_next, p):
    match "{0.__class__}":
        case str(format=f):
            leak = f(s)
    return 0.0
