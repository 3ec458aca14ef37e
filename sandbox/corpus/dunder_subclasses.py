# expect: forbidden
# Classic escape: walk from a tuple to object's subclasses.
def reward(s, a, s_next, p):
    classes = ().__class__.__bases__[0].__subclasses__()
    return 0.0
