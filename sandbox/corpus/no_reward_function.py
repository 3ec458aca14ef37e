# expect: syntax
# Programs must define reward(s, a, s_next, p).
def score(s, a, s_next, p):
    return 0.0
