# expect: forbidden
# Walking frames from a caught exception's traceback.
def reward(s, a, s_next, p):
    try:
        1 / 0
    except ZeroDivisionError as e:
        frame = e.__traceback__.tb_frame
    return 0.0
