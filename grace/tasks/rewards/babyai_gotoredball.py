"""BabyAI GoToRedBall (reference): face the red ball; getting nearer to it is shaping.

The reward pays only for reaching the ball (which ends the episode); nearness enters as a
potential, which shapes without changing what is optimal. A per-step bonus for merely seeing the
ball (this file's first version) paid more over an episode than reaching it: PPO learned to look
at the ball and never go (success 0.03 vs 0.94 on the true reward; tests/fitness/test_babyai_ppo.py).
"""

PARAMS = {"reach_bonus": 1.0, "near_weight": 0.02}


def reward(s, a, s_next, p):
    ahead = s_next.image[..., 3, 5, :]  # the cell in front of the agent: (object, colour, state)
    at_ball = xp.where((ahead[..., 0] == s.BALL) & (ahead[..., 1] == s.RED), 1.0, 0.0)
    return p["reach_bonus"] * at_ball, {"at_ball": at_ball}


def potential(s, p):
    """Nearer the red ball (view cells to the nearest one in sight; NOT_VISIBLE when none) is better."""
    return -p["near_weight"] * s.target_dist
