# expect: forbidden
# Reaching the print collector or other injected guards by name.
def reward(s, a, s_next, p):
    collector = _print_
    return 0.0
