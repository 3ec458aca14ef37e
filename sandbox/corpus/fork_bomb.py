# expect: forbidden
# Fork bomb needs os.
def reward(s, a, s_next, p):
    import os
    while True:
        os.fork()
