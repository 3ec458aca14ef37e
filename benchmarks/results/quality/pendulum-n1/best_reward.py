"""Reward: theta angle near -0.0576, angular_velocity above -0.211, high action effort.

grace provenance:
  task: pendulum
  demos: runs/quality/demos/pendulum-n1.npz (sha256 62d6f7a68031)
  fitness: 0.8515 train, nan held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.986 train, nan held-out; AUC 0.988 train, nan held-out
  run: runs/quality/pendulum-n1 round 0 generation 8 slot 14
  program: 1089bc3ee381 (crossover by offline)
  lineage: 1089bc3ee381 <- bdac0627b22a <- 999d9d0ca84e <- 0b5e6ce58d24 <- 84a4f0a4d5f1
  grace: 0.1.0
"""

PARAMS = {
    "w_theta_angle": 0.4073,
    "c_theta_angle": -0.09504,
    "s_theta_angle": -0.2851,
    "w_angular_velocity": 1.43,
    "t_angular_velocity": -0.1976,
    "w_action_effort": 0.06908,
}


def reward(s, a, s_next, p):
    theta_angle = p["w_theta_angle"] * xp.exp(-(((xp.arctan2(s_next.sin_theta, s_next.cos_theta) - p["c_theta_angle"]) / p["s_theta_angle"]) ** 2))
    angular_velocity = p["w_angular_velocity"] * xp.where(s_next.angular_velocity > p["t_angular_velocity"], 1.0, 0.0)
    action_effort = p["w_action_effort"] * xp.sum(a ** 2, axis=-1)
    return theta_angle + angular_velocity + action_effort, {"theta_angle": theta_angle, "angular_velocity": angular_velocity, "action_effort": action_effort}
