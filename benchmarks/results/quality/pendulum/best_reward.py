"""Reward: cos_theta - angular_velocity near 1.05 when cos_theta above 0.983, cos_theta near 1.

grace provenance:
  task: pendulum
  demos: demos/pendulum.npz (sha256 7cb6a3cb79d9)
  fitness: 0.7199 train, 0.7383 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.938 train, 0.936 held-out; AUC 0.954 train, 0.967 held-out
  run: runs/quality/pendulum round 0 generation 3 slot 24
  program: aff9781cfefd (mutate by offline)
  lineage: aff9781cfefd <- 60d83a7d2e60 <- b13180f89f45 <- ec40dcfdf25d
  grace: 0.1.0
"""

PARAMS = {
    "w_cos_theta_minus_angular_velocity": 5.29,
    "c_cos_theta_minus_angular_velocity": 1.15,
    "s_cos_theta_minus_angular_velocity": 0.4534,
    "g_cos_theta_minus_angular_velocity": 0.988,
    "w_cos_theta": 1.518,
    "c_cos_theta": 1.338,
    "s_cos_theta": 0.5582,
}


def reward(s, a, s_next, p):
    cos_theta_minus_angular_velocity = xp.where(s_next.cos_theta > p["g_cos_theta_minus_angular_velocity"], p["w_cos_theta_minus_angular_velocity"] * xp.exp(-(((s_next.cos_theta - s_next.angular_velocity - p["c_cos_theta_minus_angular_velocity"]) / p["s_cos_theta_minus_angular_velocity"]) ** 2)), 0.0)
    cos_theta = p["w_cos_theta"] * xp.exp(-(((s_next.cos_theta - p["c_cos_theta"]) / p["s_cos_theta"]) ** 2))
    return cos_theta_minus_angular_velocity + cos_theta, {"cos_theta_minus_angular_velocity": cos_theta_minus_angular_velocity, "cos_theta": cos_theta}
