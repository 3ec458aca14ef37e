# expect: forbidden
# Docstring-line smuggling: a string opened on the docstring's line hides code that a line-based rewrite of the docstring would make live.
"""Upright pole."""; notes = """
open("grace_marker_docstring", "w").write("escaped")
"""


def reward(s, a, s_next, p):
    return 1.0 - xp.abs(s_next.pole_angle)
