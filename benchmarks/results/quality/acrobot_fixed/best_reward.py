"""Reward: cos(theta1) + cos(theta1+theta2) below -1.06.

grace provenance:
  task: acrobot_fixed
  demos: demos/acrobot_fixed.npz (sha256 9333cc97ac11)
  fitness: 0.9991 train, 0.9991 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 1.000 train, 1.000 held-out; AUC 1.000 train, 1.000 held-out
  run: runs/quality/acrobot_fixed round 0 generation 0 slot 1
  program: 7c9581eb27c7 (init by offline)
  lineage: 7c9581eb27c7
  grace: 0.1.0
"""

PARAMS = {"w_theta1_theta2_chain": 1.0, "t_theta1_theta2_chain": -1.06}


def reward(s, a, s_next, p):
    theta1_theta2_chain = p["w_theta1_theta2_chain"] * xp.where(s_next.cos_theta1 + (s_next.cos_theta1 * s_next.cos_theta2 - s_next.sin_theta1 * s_next.sin_theta2) < p["t_theta1_theta2_chain"], 1.0, 0.0)
    return theta1_theta2_chain, {"theta1_theta2_chain": theta1_theta2_chain}
