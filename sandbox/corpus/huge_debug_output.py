# expect: ok
# A 100 MB debug string is truncated, not shipped.
# call: debug
def reward(s, a, s_next, p):
    return 0.0


def debug(s, a, s_next, p):
    return "x" * 100_000_000
