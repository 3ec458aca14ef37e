# expect: timeout
# Infinite loop.
def reward(s, a, s_next, p):
    while True:
        pass
