# expect: bad_return
# A huge components dict is refused.
def reward(s, a, s_next, p):
    total = s_next.pole_angle * 0.0
    return total, {str(i): total for i in range(100000)}
