"""Reward: high action effort, pole_angle near c_pole_angle, pole_angular_velocity*cart_velocity above t_pole_angular_velocity_x_cart_velocity.

grace provenance:
  task: inverted_pendulum
  demos: demos/inverted_pendulum.npz (sha256 c032852cf189)
  fitness: 0.8533 train, 0.8911 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.965 train, 0.974 held-out; AUC 0.992 train, 0.997 held-out
  run: runs/quality/inverted_pendulum round 0 generation 12 slot 5
  program: de3fd58ffdd9 (simplify by offline)
  lineage: de3fd58ffdd9 <- 4fd8960bb1af <- 0313b7a315b7 <- 125a8d58a3a6
  grace: 0.1.0
"""

PARAMS = {
    "w_action_effort": 0.07047,
    "w_pole_angle": 1.05,
    "c_pole_angle": -0.000655,
    "w_pole_angular_velocity_x_cart_velocity": 0.1029,
    "t_pole_angular_velocity_x_cart_velocity": -0.8722,
}


def reward(s, a, s_next, p):
    action_effort = p["w_action_effort"] * xp.sum(a ** 2, axis=-1)
    pole_angle = -p["w_pole_angle"] * xp.abs(s_next.pole_angle - p["c_pole_angle"])
    pole_angular_velocity_x_cart_velocity = p["w_pole_angular_velocity_x_cart_velocity"] * xp.where(s_next.pole_angular_velocity * s_next.cart_velocity > p["t_pole_angular_velocity_x_cart_velocity"], 1.0, 0.0)
    return action_effort + pole_angle + pole_angular_velocity_x_cart_velocity, {"action_effort": action_effort, "pole_angle": pole_angle, "pole_angular_velocity_x_cart_velocity": pole_angular_velocity_x_cart_velocity}
