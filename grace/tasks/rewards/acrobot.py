"""Acrobot (reference): raise the tip of the chain above the line."""

PARAMS = {"line": 1.0, "goal_bonus": 1.0, "height_weight": 0.1}


def reward(s, a, s_next, p):
    # cos(theta1 + theta2) = cos1 cos2 - sin1 sin2
    cos12 = s_next.cos_theta1 * s_next.cos_theta2 - s_next.sin_theta1 * s_next.sin_theta2
    tip = -s_next.cos_theta1 - cos12
    above = xp.where(tip > p["line"], 1.0, 0.0)
    return p["goal_bonus"] * above + p["height_weight"] * tip, {"above": above, "tip_height": tip}
