# expect: forbidden
# Classes could define dunder methods; refused.
class Evil:
    pass


def reward(s, a, s_next, p):
    return 0.0
