# expect: ok
# A non-ASCII identifier needs unicodedata in the worker (preloaded).
def reward(s, a, s_next, p):
    größe = 1.0 - xp.abs(s_next.pole_angle)
    return größe
