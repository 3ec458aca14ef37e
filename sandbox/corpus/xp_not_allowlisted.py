# expect: forbidden
# numpy names outside the allow-list do not exist on xp (file I/O).
def reward(s, a, s_next, p):
    xp.save("x.npy", s.raw)
    return 0.0
