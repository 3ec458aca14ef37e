# expect: forbidden
# Generator frame walking (RestrictedPython CVE-2023-37271 family).
def reward(s, a, s_next, p):
    g = (x for x in [])
    glb = g.gi_frame.f_back.f_back.f_globals
    return 0.0
