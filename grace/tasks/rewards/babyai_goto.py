"""BabyAI GoTo (reference): face an object of the mission's type and colour; nearer helps."""

PARAMS = {"reach_bonus": 1.0, "near_weight": 0.05}


def reward(s, a, s_next, p):
    reached = s_next.front_is_target
    near = 1.0 - s_next.target_dist / s.NOT_VISIBLE
    return p["reach_bonus"] * reached + p["near_weight"] * near, {"reached": reached, "near": near}
