"""The built-in tasks: classic control (gymnasium + gymnax), Brax (inverted pendulum here; locomotion in
grace.tasks.locomotion) and BabyAI (grace.tasks.babyai)."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np

from grace.tasks import experts, fixed_horizon
from grace.tasks.locomotion import brax_gym, brax_jax, locomotion_tasks
from grace.tasks.spec import ActionSpace, Field, ObsSchema, Task

REWARDS = Path(__file__).parent / "rewards"


def _gym(env_id: str, max_steps: int | None = None):
    kw = {"max_episode_steps": max_steps} if max_steps else {}
    return gym.make(env_id, disable_env_checker=True, **kw)


def _gymnax(env_id: str, fixed: bool = False):
    from grace.tasks import jax_envs

    return jax_envs.make(env_id, fixed_horizon=fixed)


CARTPOLE_SCHEMA = ObsSchema(
    (
        Field("cart_position", unit="m", doc="cart position on the track, 0 is the centre; the episode fails beyond +-2.4"),
        Field("cart_velocity", unit="m/s", doc="cart velocity"),
        Field("pole_angle", unit="rad", doc="pole angle from vertical, 0 is upright; fails beyond +-0.21"),
        Field("pole_angular_velocity", unit="rad/s", doc="pole angular velocity"),
    )
)
CARTPOLE_DESC = (
    "A pole is attached by an unactuated joint to a cart moving along a frictionless track. "
    "The agent pushes the cart left (action 0) or right (action 1) with a fixed force. "
    "The expert keeps the pole balanced upright and the cart on the track for as long as the "
    "episode lasts."
)
MOUNTAINCAR_SCHEMA = ObsSchema(
    (
        Field("position", unit="m", doc="car position along the valley, in [-1.2, 0.6]; the valley bottom is near -0.52; the goal flag is at the top of the right hill"),
        Field("velocity", unit="m/s", doc="car velocity, in [-0.07, 0.07]; positive is rightwards"),
    )
)
MOUNTAINCAR_DESC = (
    "An under-powered car sits in a valley between two hills. Actions: 0 accelerate left, 1 do "
    "nothing, 2 accelerate right. The engine alone cannot climb the right hill; the car must "
    "build momentum by rocking back and forth. The expert drives the car to the flag at the "
    "top of the right hill as quickly as possible."
)
MOUNTAINCAR_PPO = {"num_envs": 16, "num_steps": 16, "num_epochs": 4, "num_minibatches": 4, "gae_lambda": 0.98,
                   "gamma": 0.99, "ent_coef": 0.0, "learning_rate": 3e-4, "normalize_observations": True,
                   "normalize_rewards": False}
"""RL Zoo's MountainCar-v0 PPO (rl-baselines3-zoo hyperparams/ppo.yml: 16 envs x 16 steps, GAE lambda
0.98, 4 epochs, no entropy bonus, observations normalised, rewards not; SB3's defaults for the rest:
learning rate 3e-4, batches of 64): 8x as many updates as grace's discrete defaults. With them
true-reward PPO reaches the flag in 200,000 steps (0.88 normalised, where the defaults never reach
it) and so does grace's winner, faster (benchmarks/results/mc_ppo_settings.md). Whatever they leave
out stays grace's discrete default (the symlog reward transform among them), as in that run."""

ACROBOT_SCHEMA = ObsSchema(
    (
        Field("cos_theta1", doc="cosine of the first link's angle (theta1 = 0: hanging straight down)"),
        Field("sin_theta1", doc="sine of the first link's angle"),
        Field("cos_theta2", doc="cosine of the second link's angle relative to the first"),
        Field("sin_theta2", doc="sine of the second link's angle relative to the first"),
        Field("theta1_velocity", unit="rad/s", doc="angular velocity of the first link"),
        Field("theta2_velocity", unit="rad/s", doc="angular velocity of the second link"),
    )
)
ACROBOT_DESC = (
    "Two links hang from a fixed pivot; only the joint between them is actuated, with torque "
    "-1, 0 or +1 (actions 0, 1, 2). Both links have length 1. The expert swings the free end "
    "of the chain up until the tip rises above a line one link length above the pivot, "
    "as quickly as possible. Tip height above the pivot is -cos(theta1) - cos(theta1 + theta2)."
)
PENDULUM_SCHEMA = ObsSchema(
    (
        Field("cos_theta", doc="cosine of the pendulum angle (1 = upright, -1 = hanging down)"),
        Field("sin_theta", doc="sine of the pendulum angle"),
        Field("angular_velocity", unit="rad/s", doc="angular velocity, in [-8, 8]"),
    )
)
PENDULUM_DESC = (
    "A pendulum hangs from a motor at its pivot; it starts at a random angle. The action is a "
    "torque in [-2, 2], too weak to lift the pendulum directly, so it must be swung up. The "
    "expert swings the pendulum up and then keeps it balanced upright and still, using little "
    "torque. The episode always lasts 200 steps."
)
IP_SCHEMA = ObsSchema(
    (
        Field("cart_position", unit="m", doc="slider position of the cart, 0 is the centre"),
        Field("pole_angle", unit="rad", doc="hinge angle of the pole, 0 is upright; the episode ends beyond +-0.2"),
        Field("cart_velocity", unit="m/s", doc="cart velocity"),
        Field("pole_angular_velocity", unit="rad/s", doc="pole angular velocity"),
    )
)
IP_DESC = (
    "MuJoCo-style inverted pendulum (Brax): a cart on a rail with a pole on a hinge. The action "
    "is a continuous force on the cart in [-1, 1]. The expert keeps the pole upright for the "
    "whole 1000-step episode."
)
def _return_at_least(threshold: float, ret, terminated, obs) -> bool:
    return bool(ret >= threshold)


def _returns_at_least(threshold: float):
    """A success test; a partial, so a Task built from a built-in one stays picklable."""
    return partial(_return_at_least, threshold)


def _pendulum_upright(ret, terminated, obs) -> bool:
    tail = obs[-len(obs) // 4 :]
    return bool(np.mean(tail[:, 0] > 0.9) > 0.9)


def _mc_reached(ret, terminated, obs) -> bool:
    return bool(terminated or np.max(obs[:, 0]) >= 0.5)


def _acrobot_reached(ret, terminated, obs) -> bool:
    tip = -obs[:, 0] - (obs[:, 0] * obs[:, 2] - obs[:, 1] * obs[:, 3])
    return bool(terminated or np.max(tip) > 1.0)


def builtin_tasks() -> dict[str, Task]:
    t: list[Task] = [
        Task(
            name="cartpole", description=CARTPOLE_DESC, schema=CARTPOLE_SCHEMA,
            action=ActionSpace("discrete", n=2, doc="0 pushes the cart left, 1 pushes it right"),
            kind="keepalive", make_env=partial(_gym, "CartPole-v1"),
            make_jax_env=partial(_gymnax, "CartPole-v1"), jax_backend="gymnax", max_steps=500,
            expert=experts.cartpole, expert_doc="scripted linear state feedback",
            true_reward_doc="+1 per step until the pole falls or the cart leaves the track",
            success=_returns_at_least(475), reference_reward=REWARDS / "cartpole.py",
        ),
        Task(
            name="cartpole_fixed", description=CARTPOLE_DESC + " Episodes never end early: they always last 500 steps.",
            schema=CARTPOLE_SCHEMA,
            action=ActionSpace("discrete", n=2, doc="0 pushes the cart left, 1 pushes it right"),
            kind="keepalive", make_env=fixed_horizon.cartpole_fixed,
            make_jax_env=partial(_gymnax, "CartPole-v1", True), jax_backend="gymnax", max_steps=500,
            expert=experts.cartpole, expert_doc="scripted linear state feedback",
            true_reward_doc="+1 per step while the pole is within +-12 deg and the cart within +-2.4 m",
            success=_returns_at_least(475), reference_reward=REWARDS / "cartpole.py",
        ),
        Task(
            name="mountaincar", description=MOUNTAINCAR_DESC, schema=MOUNTAINCAR_SCHEMA,
            action=ActionSpace("discrete", n=3, doc="0 left, 1 no push, 2 right"),
            kind="goal", make_env=partial(_gym, "MountainCar-v0"),
            make_jax_env=partial(_gymnax, "MountainCar-v0"), jax_backend="gymnax", max_steps=200,
            expert=experts.mountaincar, expert_doc="scripted energy pumping (push along velocity)",
            true_reward_doc="-1 per step until the car reaches position 0.5",
            success=_mc_reached, reference_reward=REWARDS / "mountaincar.py", ppo=dict(MOUNTAINCAR_PPO),  # why: MOUNTAINCAR_PPO
        ),
        Task(
            name="mountaincar_fixed", description=MOUNTAINCAR_DESC + " Episodes always last 200 steps; the car should get to the flag and stay there.",
            schema=MOUNTAINCAR_SCHEMA,
            action=ActionSpace("discrete", n=3, doc="0 left, 1 no push, 2 right"),
            kind="goal", make_env=fixed_horizon.mountaincar_fixed,
            demo_env=partial(_gym, "MountainCar-v0"),
            make_jax_env=partial(_gymnax, "MountainCar-v0", True), jax_backend="gymnax", max_steps=200,
            expert=experts.mountaincar, expert_doc="scripted energy pumping (push along velocity)",
            true_reward_doc="0 per step at the flag (position >= 0.5), else -1",
            success=_mc_reached, reference_reward=REWARDS / "mountaincar.py", ppo=dict(MOUNTAINCAR_PPO),  # why: MOUNTAINCAR_PPO
        ),
        Task(
            name="acrobot", description=ACROBOT_DESC, schema=ACROBOT_SCHEMA,
            action=ActionSpace("discrete", n=3, doc="torque -1, 0, +1 on the middle joint"),
            kind="goal", make_env=partial(_gym, "Acrobot-v1"),
            make_jax_env=partial(_gymnax, "Acrobot-v1"), jax_backend="gymnax", max_steps=500,
            expert=experts.acrobot, expert_doc="scripted energy pumping on the second joint",
            true_reward_doc="-1 per step until the tip rises above the line",
            success=_acrobot_reached, reference_reward=REWARDS / "acrobot.py",
        ),
        Task(
            name="acrobot_fixed", description=ACROBOT_DESC + " Episodes always last 500 steps; the tip should rise above the line as often as possible.",
            schema=ACROBOT_SCHEMA,
            action=ActionSpace("discrete", n=3, doc="torque -1, 0, +1 on the middle joint"),
            kind="goal", make_env=fixed_horizon.acrobot_fixed, demo_env=partial(_gym, "Acrobot-v1"),
            make_jax_env=partial(_gymnax, "Acrobot-v1", True), jax_backend="gymnax", max_steps=500,
            expert=experts.acrobot, expert_doc="scripted energy pumping on the second joint",
            true_reward_doc="0 per step with the tip above the line, else -1",
            success=_acrobot_reached, reference_reward=REWARDS / "acrobot.py",
        ),
        Task(
            name="pendulum", description=PENDULUM_DESC, schema=PENDULUM_SCHEMA,
            action=ActionSpace("continuous", shape=(1,), low=-2.0, high=2.0, doc="torque at the pivot"),
            kind="keepalive", make_env=partial(_gym, "Pendulum-v1"),
            make_jax_env=partial(_gymnax, "Pendulum-v1"), jax_backend="gymnax", max_steps=200,
            expert=experts.pendulum, expert_doc="scripted energy-based swing-up + PD balance",
            true_reward_doc="-(theta^2 + 0.1 theta_dot^2 + 0.001 u^2) per step",
            success=_pendulum_upright, reference_reward=REWARDS / "pendulum.py",
            # rl-zoo's Pendulum-v1 PPO settings (short horizon, gamma 0.9, big batches): grace's
            # continuous defaults (gamma 0.99) do not learn the swing-up in 200k steps even on the
            # true reward (benchmarks/results/quality.md, first wave).
            ppo={"num_envs": 16, "num_steps": 256, "num_epochs": 10, "num_minibatches": 16,
                 "learning_rate": 1e-3, "gamma": 0.9, "gae_lambda": 0.95},
        ),
        Task(
            name="inverted_pendulum", description=IP_DESC, schema=IP_SCHEMA,
            action=ActionSpace("continuous", shape=(1,), low=-1.0, high=1.0, doc="force on the cart"),
            kind="keepalive", make_env=partial(brax_gym, "inverted_pendulum", 1000),
            make_jax_env=partial(brax_jax, "inverted_pendulum", 1000), jax_backend="brax",
            max_steps=1000, expert=experts.inverted_pendulum, expert_doc="scripted PD controller",
            true_reward_doc="+1 per step until |pole angle| > 0.2",
            success=_returns_at_least(950), reference_reward=REWARDS / "inverted_pendulum.py",
        ),
    ]
    from grace.tasks.babyai.levels import babyai_tasks

    return {task.name: task for task in t} | locomotion_tasks() | babyai_tasks()
