"""Reward: cart_velocity*pole_angular_velocity near -0.0329, pole_angle near -5.36e-07.

grace provenance:
  task: cartpole_fixed
  demos: demos/cartpole_fixed.npz (sha256 323f1097d04c)
  fitness: 0.9681 train, 0.9823 held-out (offline GRACE discrimination, negatives v0)
  accuracy: 0.994 train, 0.997 held-out; AUC 0.999 train, 0.999 held-out
  run: runs/quality/cartpole_fixed round 0 generation 9 slot 26
  program: af62377dd936 (simplify by offline)
  lineage: af62377dd936 <- f9f0ec6f5f2a <- 0d7c6db523e9 <- 7baa4d73972d <- 4988866031ac <- 8a1438c1b172 <- 105ff2400619
  grace: 0.1.0
"""

PARAMS = {
    "w_cart_velocity_x_pole_angular_velocity": 52.87,
    "c_cart_velocity_x_pole_angular_velocity": -0.00292,
    "s_cart_velocity_x_pole_angular_velocity": 0.1925,
    "w_pole_angle": 58.76,
    "c_pole_angle": -8.424e-08,
    "s_pole_angle": 0.03862,
}


def reward(s, a, s_next, p):
    cart_velocity_x_pole_angular_velocity = p["w_cart_velocity_x_pole_angular_velocity"] * xp.exp(-(((s_next.cart_velocity * s_next.pole_angular_velocity - p["c_cart_velocity_x_pole_angular_velocity"]) / p["s_cart_velocity_x_pole_angular_velocity"]) ** 2))
    pole_angle = p["w_pole_angle"] * xp.exp(-(((s_next.pole_angle - p["c_pole_angle"]) / p["s_pole_angle"]) ** 2))
    return cart_velocity_x_pole_angular_velocity + pole_angle, {"cart_velocity_x_pole_angular_velocity": cart_velocity_x_pole_angular_velocity, "pole_angle": pole_angle}
