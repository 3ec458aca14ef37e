"""A single Brax env behind the gymnasium API (numpy in, numpy out), for demos and rollouts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


class BraxGymEnv(gym.Env):
    """Jitted reset/step of one Brax env; `terminated` is Brax's `done`, truncation at max_steps."""

    def __init__(self, name: str, max_steps: int = 1000, backend: str | None = None) -> None:
        import jax
        from brax import envs

        kwargs = {"backend": backend} if backend else {}
        self._env = envs.get_environment(name, **kwargs)
        self._reset = jax.jit(self._env.reset)
        self._step = jax.jit(self._env.step)
        self._jax = jax
        self.max_steps = max_steps
        obs_dim, act_dim = self._env.observation_size, self._env.action_size
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
        self._state: Any = None
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        key = self._jax.random.PRNGKey(0 if seed is None else seed)
        self._state = self._reset(key)
        self._t = 0
        return np.asarray(self._state.obs, dtype=np.float32), {}

    def step(self, action):
        self._state = self._step(self._state, np.asarray(action, dtype=np.float32))
        self._t += 1
        obs = np.asarray(self._state.obs, dtype=np.float32)
        terminated = bool(self._state.done > 0.5)
        truncated = (not terminated) and self._t >= self.max_steps
        return obs, float(self._state.reward), terminated, truncated, {}
