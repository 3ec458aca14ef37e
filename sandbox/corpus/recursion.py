# expect: runtime
# Infinite recursion is a RecursionError, not a crash.
def f(n):
    return f(n + 1)


def reward(s, a, s_next, p):
    return f(0)
