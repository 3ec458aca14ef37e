# expect: forbidden
# RestrictedPython CVE-2026-55830: shadow a guard hook via a positional-only parameter.
def reward(s, a, s_next, p):
    def inner(_write_, /):
        return _write_
    return 0.0
