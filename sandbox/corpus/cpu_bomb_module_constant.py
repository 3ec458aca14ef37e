# expect: timeout
# A module-level constant that is expensive to evaluate (not folded at compile time): runs in the worker, stopped by the timeout.
HUGE = 9 ** 9 ** 9


def reward(s, a, s_next, p):
    return s_next.pole_angle
