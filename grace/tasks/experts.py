"""Scripted experts for the built-in tasks (used by `grace demos collect`).

Each returns a policy `pi(obs, rng) -> action`. Measured returns are in demos/README.md.
"""

from __future__ import annotations

import numpy as np

from grace.tasks.spec import Policy


def cartpole() -> Policy:
    # Linear state feedback on (angle, angular velocity, position, velocity).
    return lambda o, rng: int(o[2] + 0.3 * o[3] + 0.05 * o[0] + 0.1 * o[1] > 0)


def mountaincar() -> Policy:
    # Energy pumping: push in the direction of motion.
    return lambda o, rng: 2 if o[1] >= 0 else 0


def acrobot() -> Policy:
    # Pump energy by torquing the second joint along its own velocity.
    return lambda o, rng: 2 if o[5] > 0 else 0


def pendulum() -> Policy:
    def pi(o: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c, s, w = float(o[0]), float(o[1]), float(o[2])
        if c > 0.8:  # near upright: PD on the angle
            u = -(12.0 * np.arctan2(s, c) + 2.5 * w)
        else:  # swing up: pump energy towards the upright level (E = 15)
            energy = 0.5 * w * w + 15.0 * c
            u = 2.0 * np.sign(w * (15.0 - energy)) if abs(w) > 1e-3 else 2.0
        return np.array([np.clip(u, -2.0, 2.0)], dtype=np.float32)

    return pi


def inverted_pendulum() -> Policy:
    # PD on the pole angle plus a weak pull of the cart to the centre; action in [-1, 1].
    def pi(o: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        x, th, xd, thd = (float(v) for v in o[:4])
        u = 4.0 * th + 1.0 * thd + 0.2 * x + 0.4 * xd
        return np.array([np.clip(u, -1.0, 1.0)], dtype=np.float32)

    return pi
