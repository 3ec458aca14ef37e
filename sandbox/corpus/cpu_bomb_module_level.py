# expect: forbidden
# Infinite loop in the module body: module-level code is limited to the contract (refused before it runs).
while True:
    pass


def reward(s, a, s_next, p):
    return 0.0
