# expect: ok
# PARAMS ends with a backslash continuation and the next line opens a string holding code: inert here; PARAMS write-back and export must keep it inert (or refuse).
PARAMS = {"w": 1.0} \
; notes = """
open("grace_marker_continuation", "w").write("escaped")
"""


def reward(s, a, s_next, p):
    return p["w"] * (1.0 - xp.abs(s_next.pole_angle))
