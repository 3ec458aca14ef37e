"""Reward: pole_angular_velocity near 0.0246, pole_angle near 0.000827.

grace provenance:
  task: cartpole
  demos: demos/cartpole.npz (sha256 7f5217592abe)
  fitness: 0.7506 train, 0.7764 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.951 train, 0.957 held-out; AUC 0.972 train, 0.974 held-out
  run: runs/quality/cartpole round 0 generation 7 slot 7
  program: 178e0f11407b (mutate by offline)
  lineage: 178e0f11407b <- d6c9e3e022bf <- 539de24f2406
  grace: 0.1.0
"""

PARAMS = {
    "w_pole_angular_velocity": 0.003428,
    "c_pole_angular_velocity": 0.0006831,
    "w_pole_angle": 0.0526,
    "c_pole_angle": 0.0001311,
}


def reward(s, a, s_next, p):
    pole_angular_velocity = -p["w_pole_angular_velocity"] * (s_next.pole_angular_velocity - p["c_pole_angular_velocity"]) ** 2
    pole_angle = -p["w_pole_angle"] * xp.abs(s_next.pole_angle - p["c_pole_angle"])
    return pole_angular_velocity + pole_angle, {"pole_angular_velocity": pole_angular_velocity, "pole_angle": pole_angle}
