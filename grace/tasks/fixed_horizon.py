"""Fixed-horizon variants of classic-control envs (no early termination).

On CartPole, Acrobot and MountainCar the episode end itself leaks the true reward: any
always-positive (or always-negative) learned reward recovers the behaviour up to scale. These
variants never terminate early (as the `seals` package does for CartPole), so a learned reward
has to carry the information itself. The reward they report is the natural fixed-horizon one:
1 while the pole is up (CartPole), 0 at the goal else -1 (MountainCar, Acrobot).
"""

from __future__ import annotations

import gymnasium as gym

FIXED_HORIZON_REWARDS: dict[str, tuple[float, float]] = {
    # env_id: (reward when the original termination test holds, reward otherwise); the one table
    # for the gymnasium wrappers here and the gymnax ones in grace.tasks.jax_envs
    "CartPole-v1": (0.0, 1.0),
    "MountainCar-v0": (0.0, -1.0),
    "Acrobot-v1": (0.0, -1.0),
}


class NoTermination(gym.Wrapper):
    """Never terminate; reward = `inside` if the original termination test holds, else `outside`."""

    def __init__(self, env: gym.Env, on_terminal: float, otherwise: float) -> None:
        super().__init__(env)
        self.on_terminal = on_terminal
        self.otherwise = otherwise

    def step(self, action):  # type: ignore[override]
        inner = self.env.unwrapped
        if hasattr(inner, "steps_beyond_terminated"):
            inner.steps_beyond_terminated = None  # silence "step after terminated" warnings
        obs, _, terminated, truncated, info = self.env.step(action)
        info = dict(info, inner_terminated=bool(terminated))
        reward = self.on_terminal if terminated else self.otherwise
        return obs, float(reward), False, truncated, info


def _make(env_id: str, max_steps: int) -> gym.Env:
    env = gym.make(env_id, max_episode_steps=max_steps, disable_env_checker=True)
    return NoTermination(env, *FIXED_HORIZON_REWARDS[env_id])


def cartpole_fixed(max_steps: int = 500) -> gym.Env:
    return _make("CartPole-v1", max_steps)


def mountaincar_fixed(max_steps: int = 200) -> gym.Env:
    return _make("MountainCar-v0", max_steps)


def acrobot_fixed(max_steps: int = 500) -> gym.Env:
    return _make("Acrobot-v1", max_steps)
