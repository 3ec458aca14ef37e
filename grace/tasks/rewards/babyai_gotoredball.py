"""BabyAI GoToRedBall (reference): face the red ball; seeing it, and nearer, helps on the way."""

PARAMS = {"reach_bonus": 1.0, "seen_weight": 0.05}


def reward(s, a, s_next, p):
    ahead = s_next.image[..., 3, 5, :]  # the cell in front of the agent: (object, colour, state)
    at_ball = xp.where((ahead[..., 0] == s.BALL) & (ahead[..., 1] == s.RED), 1.0, 0.0)
    cells = s_next.image[..., 0] * 10 + s_next.image[..., 1]
    seen = xp.where(xp.any(cells == s.BALL * 10 + s.RED, axis=(-2, -1)), 1.0, 0.0)
    return p["reach_bonus"] * at_ball + p["seen_weight"] * seen, {"at_ball": at_ball, "seen": seen}
