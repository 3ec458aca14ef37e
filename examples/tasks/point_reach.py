"""A tiny user environment: a point mass on a plane must reach and stop at a target.

Used by examples/tasks/point_reach.toml to show that grace works with environments it has never
seen (no built-in schema, no reference reward). Plain gymnasium; no grace imports.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class PointReach(gym.Env):
    """obs = [x, y, vx, vy, target_dx, target_dy]; action = 2-D force in [-1, 1]."""

    def __init__(self, max_steps: int = 100) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (6,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.max_steps = max_steps

    def _obs(self) -> np.ndarray:
        return np.concatenate([self.pos, self.vel, self.target - self.pos]).astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2)
        self.vel = np.zeros(2)
        self.target = self.np_random.uniform(-1, 1, 2)
        self.t = 0
        return self._obs(), {}

    def step(self, action):
        a = np.clip(np.asarray(action, dtype=float), -1, 1)
        self.vel = 0.8 * self.vel + 0.02 * a
        self.pos = self.pos + self.vel
        self.t += 1
        dist = float(np.linalg.norm(self.target - self.pos))
        done = dist < 0.05 and float(np.linalg.norm(self.vel)) < 0.02
        return self._obs(), -dist, done, self.t >= self.max_steps, {}


def make_env() -> gym.Env:
    return PointReach()


def expert():
    """Scripted expert: PD control towards the target."""
    return lambda o, rng: np.clip(4.0 * o[4:6] - 6.0 * o[2:4], -1, 1).astype(np.float32)
