"""Reward: sin_theta1*sin_theta2 above -0.0857.

grace provenance:
  task: acrobot
  demos: demos/acrobot.npz (sha256 7445cff291a1)
  fitness: 0.9912 train, 0.9850 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.999 train, 0.999 held-out; AUC 0.999 train, 0.999 held-out
  run: runs/quality/acrobot round 0 generation 2 slot 1
  program: 5d8acb27a92e (mutate by offline)
  lineage: 5d8acb27a92e <- 6c99fe48e0de
  grace: 0.1.0
"""

PARAMS = {"w_sin_theta1_x_sin_theta2": 0.8015, "t_sin_theta1_x_sin_theta2": 0.799}


def reward(s, a, s_next, p):
    sin_theta1_x_sin_theta2 = p["w_sin_theta1_x_sin_theta2"] * xp.where(s_next.sin_theta1 * s_next.sin_theta2 > p["t_sin_theta1_x_sin_theta2"], 1.0, 0.0)
    return sin_theta1_x_sin_theta2, {"sin_theta1_x_sin_theta2": sin_theta1_x_sin_theta2}
