# expect: ok
# The docstring ends with a backslash continuation and the next line opens a string holding code: inert here; provenance rewrites and export must keep it inert (or refuse).
"""Upright pole.""" \
; notes = """
open("grace_marker_doc_continuation", "w").write("escaped")
"""


def reward(s, a, s_next, p):
    return 1.0 - xp.abs(s_next.pole_angle)
