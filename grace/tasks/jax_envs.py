"""JAX env factories for PPO fitness: gymnax classic control (plus fixed-horizon variants) and Brax.

- `make(env_id, fixed_horizon=False)` -> `(env, params)`: a gymnax (0.0.9) env. The fixed-horizon
  variants of CartPole-v1, MountainCar-v0 and Acrobot-v1 never terminate early (done only at
  `max_steps_in_episode`) and report the same reward as `grace.tasks.fixed_horizon` does for
  gymnasium: 1 while the pole is within limits (CartPole), 0 at the goal else -1 (MountainCar,
  Acrobot). The underlying dynamics keep running after the original termination condition.
- `make_brax(name, max_steps)` -> `(env, params)`: a Brax env behind the gymnax API (rejax's
  `Brax2GymnaxEnv` around `brax.envs.create(..., auto_reset=False)`), so the same rejax PPO trains
  on it. Brax's own auto-reset is off: gymnax's `Environment.step` resets, and `step_env` must
  return the true next observation (candidate rewards are computed on it).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from gymnax.environments import environment

from grace.tasks.fixed_horizon import FIXED_HORIZON_REWARDS

_NEVER = 2**30
"""max_steps used to evaluate an env's own termination test without its time limit."""



class FixedHorizon(environment.Environment):
    """Never terminate before `max_steps_in_episode`; reward from the original termination test.

    reward = `on_terminal` where the wrapped env's termination condition (without its time limit)
    holds for the new state, else `otherwise`; done only when the time limit is reached.
    """

    def __init__(self, env: environment.Environment, on_terminal: float, otherwise: float) -> None:
        super().__init__()
        self.env = env
        self.on_terminal = float(on_terminal)
        self.otherwise = float(otherwise)

    @property
    def default_params(self) -> Any:
        return self.env.default_params

    def inner_terminated(self, state: Any, params: Any) -> jax.Array:
        """The wrapped env's own termination test on `state`, ignoring its time limit."""
        return self.env.is_terminal(state, params.replace(max_steps_in_episode=_NEVER))

    def step_env(self, key: jax.Array, state: Any, action: Any, params: Any):  # noqa: D102
        obs, new_state, _, _, info = self.env.step_env(key, state, action, params)
        term = self.inner_terminated(new_state, params)
        reward = jnp.where(term, self.on_terminal, self.otherwise).astype(jnp.float32)
        done = new_state.time >= params.max_steps_in_episode
        info = dict(info, inner_terminated=term)
        return obs, new_state, reward, done, info

    def reset_env(self, key: jax.Array, params: Any):  # noqa: D102
        return self.env.reset_env(key, params)

    def get_obs(self, state: Any, params: Any = None, key: Any = None) -> jax.Array:  # noqa: D102
        return self.env.get_obs(state)

    def is_terminal(self, state: Any, params: Any) -> jax.Array:  # noqa: D102
        return jnp.asarray(state.time >= params.max_steps_in_episode)

    @property
    def name(self) -> str:  # noqa: D102
        return f"{self.env.name}-fixed"

    @property
    def num_actions(self) -> int:  # noqa: D102
        return self.env.num_actions

    def action_space(self, params: Any = None) -> Any:  # noqa: D102
        return self.env.action_space(params)

    def observation_space(self, params: Any) -> Any:  # noqa: D102
        return self.env.observation_space(params)

    def state_space(self, params: Any) -> Any:  # noqa: D102
        return self.env.state_space(params)


def make(env_id: str, fixed_horizon: bool = False) -> tuple[Any, Any]:
    """A gymnax env and its default params; `fixed_horizon=True` wraps it in `FixedHorizon`."""
    import gymnax

    env, params = gymnax.make(env_id)
    if fixed_horizon:
        if env_id not in FIXED_HORIZON_REWARDS:
            raise ValueError(
                f"no fixed-horizon variant of {env_id!r}; known: {', '.join(FIXED_HORIZON_REWARDS)}"
            )
        on_terminal, otherwise = FIXED_HORIZON_REWARDS[env_id]
        env = FixedHorizon(env, on_terminal, otherwise)
    return env, params


def make_brax(name: str, max_steps: int = 1000, backend: str | None = None) -> tuple[Any, Any]:
    """A Brax env behind the gymnax API (rejax's adapter; Brax auto-reset off).

    `done` is Brax's termination or the `max_steps` time limit (Brax's EpisodeWrapper);
    `state.info["truncation"]` tells them apart.
    """
    from brax import envs
    from rejax.compat.brax2gymnax import Brax2GymnaxEnv

    kwargs = {"backend": backend} if backend else {}
    benv = envs.create(name, episode_length=max_steps, auto_reset=False, **kwargs)
    env = Brax2GymnaxEnv(benv)
    return env, env.default_params
