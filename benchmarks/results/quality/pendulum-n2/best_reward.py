"""Reward: theta angle near 5e-05, high action effort, angular_velocity above -0.198.

grace provenance:
  task: pendulum
  demos: runs/quality/demos/pendulum-n2.npz (sha256 003ac9a6f555)
  fitness: 0.8325 train, 0.4683 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.983 train, 0.988 held-out; AUC 0.986 train, 0.988 held-out
  run: runs/quality/pendulum-n2 round 0 generation 11 slot 4
  program: 49fbab9d0af3 (mutate by offline)
  lineage: 49fbab9d0af3 <- 6ef1f42a00a5 <- 3f959c72871c <- 082d250f164a <- 61c1e2c29f9b <- 112cc5294b6c
  grace: 0.1.0
"""

PARAMS = {
    "w_theta_angle": 0.2088,
    "c_theta_angle": -0.07158,
    "s_theta_angle": 0.2915,
    "w_action_effort": 0.03329,
    "w_angular_velocity": 1.427,
    "t_angular_velocity": -0.2655,
}


def reward(s, a, s_next, p):
    theta_angle = p["w_theta_angle"] * xp.exp(-(((xp.arctan2(s_next.sin_theta, s_next.cos_theta) - p["c_theta_angle"]) / p["s_theta_angle"]) ** 2))
    action_effort = p["w_action_effort"] * xp.sum(a ** 2, axis=-1)
    angular_velocity = p["w_angular_velocity"] * xp.where(s_next.angular_velocity > p["t_angular_velocity"], 1.0, 0.0)
    return theta_angle + action_effort + angular_velocity, {"theta_angle": theta_angle, "action_effort": action_effort, "angular_velocity": angular_velocity}
