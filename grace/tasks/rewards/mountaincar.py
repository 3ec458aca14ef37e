"""MountainCar (reference): reach the flag on the right hill; height helps on the way."""

PARAMS = {"goal_position": 0.5, "goal_bonus": 1.0, "height_weight": 0.1}


def reward(s, a, s_next, p):
    at_goal = xp.where(s_next.position >= p["goal_position"], 1.0, 0.0)
    height = xp.sin(3.0 * s_next.position)
    return p["goal_bonus"] * at_goal + p["height_weight"] * height, {"at_goal": at_goal, "height": height}
