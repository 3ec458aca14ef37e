"""gymnax fixed-horizon variants and the Brax adapter (grace.tasks.jax_envs)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from grace.tasks import jax_envs


def _run(env, params, policy, steps: int, seed: int = 0):
    """Step with auto-reset (gymnax `step`) for `steps`; returns obs, rewards, dones."""
    key = jax.random.PRNGKey(seed)
    obs, state = env.reset(key, params)

    def body(carry, k):
        obs, state = carry
        a = policy(obs, k)
        obs2, state2, r, done, _ = env.step(k, state, a, params)
        return (obs2, state2), (obs, r, done)

    _, (obs, r, done) = jax.lax.scan(body, (obs, state), jax.random.split(key, steps))
    return np.asarray(obs), np.asarray(r), np.asarray(done)


@pytest.mark.parametrize("env_id,horizon", [("CartPole-v1", 500), ("MountainCar-v0", 200), ("Acrobot-v1", 500)])
def test_fixed_horizon_never_done_early(env_id: str, horizon: int) -> None:
    env, params = jax_envs.make(env_id, fixed_horizon=True)
    n = env.num_actions
    _, _, done = _run(env, params, lambda o, k: jax.random.randint(k, (), 0, n), 2 * horizon)
    assert np.flatnonzero(done).tolist() == [horizon - 1, 2 * horizon - 1]


def test_cartpole_fixed_reward_is_pole_within_limits() -> None:
    env, params = jax_envs.make("CartPole-v1", fixed_horizon=True)
    # always push right: the pole falls within a few dozen steps and stays down
    _, r, done = _run(env, params, lambda o, k: jnp.int32(1), 500)
    key = jax.random.PRNGKey(1)
    obs, state = env.reset(key, params)
    rewards, inside = [], []
    for _ in range(200):
        obs, state, rew, done1, _ = env.step(key, state, 1, params)
        rewards.append(float(rew))
        inside.append(abs(float(obs[2])) <= params.theta_threshold_radians and abs(float(obs[0])) <= params.x_threshold)
        assert not bool(done1)
    assert rewards == [1.0 if i else 0.0 for i in inside]
    assert 0 < sum(rewards) < 200
    assert set(np.unique(r)) <= {0.0, 1.0}


def test_mountaincar_and_acrobot_fixed_rewards() -> None:
    env, params = jax_envs.make("MountainCar-v0", fixed_horizon=True)
    obs, r, _ = _run(env, params, lambda o, k: jnp.int32(1), 200)  # idle: never reaches the flag
    assert np.all(r == -1.0)
    # start at the goal: reward 0 while position >= 0.5 and velocity >= 0
    state = env.reset(jax.random.PRNGKey(0), params)[1].replace(position=jnp.float32(0.55), velocity=jnp.float32(0.01))
    _, _, rew, done, _ = env.step(jax.random.PRNGKey(0), state, 2, params)
    assert float(rew) == 0.0 and not bool(done)
    env, params = jax_envs.make("Acrobot-v1", fixed_horizon=True)
    _, r, _ = _run(env, params, lambda o, k: jnp.int32(1), 100)
    assert np.all(r == -1.0)
    state = env.reset(jax.random.PRNGKey(0), params)[1].replace(joint_angle1=jnp.float32(np.pi))
    _, _, rew, done, _ = env.step(jax.random.PRNGKey(0), state, 1, params)
    assert float(rew) == 0.0 and not bool(done)


def test_plain_variants_still_terminate() -> None:
    env, params = jax_envs.make("CartPole-v1")
    _, _, done = _run(env, params, lambda o, k: jnp.int32(1), 100)
    assert done.any() and np.flatnonzero(done)[0] < 99


def test_unknown_fixed_variant() -> None:
    with pytest.raises(ValueError, match="no fixed-horizon variant"):
        jax_envs.make("Pendulum-v1", fixed_horizon=True)


@pytest.mark.slow
def test_make_brax_is_gymnax_compatible() -> None:
    env, params = jax_envs.make_brax("inverted_pendulum", max_steps=5)
    obs, state = env.reset(jax.random.PRNGKey(0), params)
    assert obs.shape == (4,)
    for t in range(5):
        obs, state, r, done, _ = env.step(jax.random.PRNGKey(t), state, jnp.zeros(1), params)
    assert bool(done)  # the time limit
