# expect: syntax
# Plain syntax errors get a line number.
def reward(s, a, s_next, p):
    return (0.0
