# expect: forbidden
# open() is not available.
def reward(s, a, s_next, p):
    data = open("/etc/passwd").read()
    return 0.0
