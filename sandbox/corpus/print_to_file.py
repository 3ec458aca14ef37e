# expect: runtime
# print(file=...) makes RestrictedPython's collector look up .write through the guard.
def reward(s, a, s_next, p):
    print("x", file=s.raw)
    return 0.0
