# expect: bad_return
# A generator function returns a generator object.
def reward(s, a, s_next, p):
    yield 1.0
