"""Reward: high action effort, high cos_theta, cos_theta near 0.837.

grace provenance:
  task: pendulum
  demos: runs/quality/demos/pendulum-n4.npz (sha256 a15e49f6df20)
  fitness: 0.7988 train, 0.7698 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.957 train, 0.900 held-out; AUC 0.983 train, 0.984 held-out
  run: runs/quality/pendulum-n4 round 0 generation 9 slot 10
  program: d7f660948ccf (simplify by offline)
  lineage: d7f660948ccf <- 5232bae0e6ff <- 7334eac168b9 <- 112cc5294b6c
  grace: 0.1.0
"""

PARAMS = {
    "w_action_effort": 0.003829,
    "w_cos_theta": 0.8691,
    "w_cos_theta_abs": -0.8652,
    "c_cos_theta_abs": 0.984,
}


def reward(s, a, s_next, p):
    action_effort = p["w_action_effort"] * xp.sum(a ** 2, axis=-1)
    cos_theta = p["w_cos_theta"] * s_next.cos_theta
    cos_theta_abs = -p["w_cos_theta_abs"] * xp.abs(s_next.cos_theta - p["c_cos_theta_abs"])
    return action_effort + cos_theta + cos_theta_abs, {"action_effort": action_effort, "cos_theta": cos_theta, "cos_theta_abs": cos_theta_abs}
