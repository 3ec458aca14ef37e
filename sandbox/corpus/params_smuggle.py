# expect: forbidden
# PARAMS-line smuggling: a string opened on PARAMS' last line hides code that a line-based PARAMS write-back would make live.
PARAMS = {
    "w": 1.0,
}; notes = """
open("grace_marker_params", "w").write("escaped")
"""


def reward(s, a, s_next, p):
    return p["w"] * (1.0 - xp.abs(s_next.pole_angle))
