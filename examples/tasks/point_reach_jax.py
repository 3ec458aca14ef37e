"""The JAX twin of point_reach.py (same dynamics, gymnax API) so PPO can train on the task.

`grace train`, `--fitness ppo` and active-negative rounds train PPO on a JAX env; the TOML file
names this factory (`jax_env = "point_reach_jax:make_jax_env"`). It is imported only inside
grace's PPO worker. tests/tasks/test_user_jax_env.py checks that both envs give the same
observations, rewards and terminations for the same actions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces


@struct.dataclass
class EnvState(environment.EnvState):
    pos: jax.Array
    vel: jax.Array
    target: jax.Array
    time: int


@struct.dataclass
class EnvParams(environment.EnvParams):
    max_steps_in_episode: int = 100


class PointReachJax(environment.Environment[EnvState, EnvParams]):
    """obs = [x, y, vx, vy, target_dx, target_dy]; action = 2-D force in [-1, 1]."""

    @property
    def default_params(self) -> EnvParams:
        return EnvParams()

    def step_env(self, key: jax.Array, state: EnvState, action: Any, params: EnvParams):  # noqa: D102
        a = jnp.clip(jnp.reshape(action, (2,)).astype(jnp.float32), -1.0, 1.0)
        vel = 0.8 * state.vel + 0.02 * a
        pos = state.pos + vel
        state = EnvState(pos=pos, vel=vel, target=state.target, time=state.time + 1)
        dist = jnp.linalg.norm(state.target - pos)
        reached = jnp.logical_and(dist < 0.05, jnp.linalg.norm(vel) < 0.02)
        done = jnp.logical_or(reached, state.time >= params.max_steps_in_episode)
        return (jax.lax.stop_gradient(self.get_obs(state)), jax.lax.stop_gradient(state), -dist, done,
                {"discount": self.discount(state, params), "reached": reached})

    def reset_env(self, key: jax.Array, params: EnvParams):  # noqa: D102
        k_pos, k_target = jax.random.split(key)
        state = EnvState(pos=jax.random.uniform(k_pos, (2,), minval=-1.0, maxval=1.0),
                         vel=jnp.zeros(2), target=jax.random.uniform(k_target, (2,), minval=-1.0, maxval=1.0),
                         time=0)
        return self.get_obs(state), state

    def get_obs(self, state: EnvState, params: Any = None, key: Any = None) -> jax.Array:  # noqa: D102
        return jnp.concatenate([state.pos, state.vel, state.target - state.pos]).astype(jnp.float32)

    def is_terminal(self, state: EnvState, params: EnvParams) -> jax.Array:  # noqa: D102
        dist = jnp.linalg.norm(state.target - state.pos)
        reached = jnp.logical_and(dist < 0.05, jnp.linalg.norm(state.vel) < 0.02)
        return jnp.logical_or(reached, state.time >= params.max_steps_in_episode)

    @property
    def name(self) -> str:  # noqa: D102
        return "PointReach-jax"

    @property
    def num_actions(self) -> int:  # noqa: D102
        return 2

    def action_space(self, params: EnvParams | None = None) -> spaces.Box:  # noqa: D102
        return spaces.Box(low=-1.0, high=1.0, shape=(2,), dtype=jnp.float32)

    def observation_space(self, params: EnvParams) -> spaces.Box:  # noqa: D102
        return spaces.Box(-jnp.inf, jnp.inf, (6,), jnp.float32)


def make_jax_env() -> tuple[PointReachJax, EnvParams]:
    env = PointReachJax()
    return env, env.default_params
