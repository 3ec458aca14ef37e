# expect: forbidden
# Exception methods are not on the allow-list.
def reward(s, a, s_next, p):
    try:
        1 / 0
    except ZeroDivisionError as e:
        e.with_traceback(None)
    return 0.0
