# expect: forbidden
# RestrictedPython GHSA (try/except* type confusion and leak).
def reward(s, a, s_next, p):
    try:
        raise ValueError(1)
    except* ValueError as eg:
        pass
    return 0.0
