"""The Brax locomotion tasks: schemas match brax's observations, reference rewards match brax's."""

from __future__ import annotations

import numpy as np
import pytest

from grace.program import RewardProgram
from grace.sandbox.compile import compile_reward
from grace.tasks import get_task
from grace.tasks.brax_expert import EXPERT_PPO, ExpertError, load_expert
from grace.tasks.locomotion import HUMANOID_LINKS, humanoid_com_forward_velocity

LOCOMOTION = ["hopper", "walker2d", "ant", "humanoid"]


BRAX_SIZES = {"hopper": (11, 3), "walker2d": (17, 6), "ant": (27, 8), "humanoid": (244, 17)}
"""(observation_size, action_size) of brax 0.14's envs, as test_schema_and_action_match_brax_env
measures them."""


@pytest.mark.parametrize("name", LOCOMOTION)
def test_task_is_complete(name):
    task = get_task(name)
    assert (task.obs_dim, task.action.dim) == BRAX_SIZES[name]
    RewardProgram.from_file(task.reference_reward).validate(task.schema)
    assert task.ppo["num_envs"] * task.ppo["num_steps"] % task.ppo["num_minibatches"] == 0
    assert name in EXPERT_PPO


@pytest.mark.slow  # builds brax's system: ~5 s alone, minutes on a loaded machine
@pytest.mark.parametrize("name", LOCOMOTION)
def test_schema_and_action_match_brax_env(name):
    from brax import envs

    env = envs.get_environment(name)
    task = get_task(name)
    assert (env.observation_size, env.action_size) == BRAX_SIZES[name] == (task.obs_dim, task.action.dim)


def test_humanoid_com_velocity_sums_the_links_linear_x():
    raw = np.zeros((2, 244), np.float32)
    start = get_task("humanoid").schema.slices["link_com_velocity"].start
    for i in range(len(HUMANOID_LINKS)):
        raw[:, start + 6 * i] = i + 1.0  # the x part of each link's mass-weighted velocity
        raw[:, start + 6 * i + 1] = 100.0  # y: not forward
    expected = sum(range(1, len(HUMANOID_LINKS) + 1))
    np.testing.assert_allclose(humanoid_com_forward_velocity(raw), expected)


def test_missing_expert_is_one_clear_error(tmp_path):
    with pytest.raises(ExpertError, match="grace demos collect --task hopper"):
        load_expert("hopper", tmp_path / "none.npz")


@pytest.mark.slow  # builds and jits brax's networks: minutes on a loaded 2-core machine
def test_saved_policy_loads_and_acts(tmp_path):
    from brax import envs

    from grace.tasks.brax_expert import BraxPolicy, _template, save_policy

    path = tmp_path / "hopper.npz"
    save_policy(path, _template(envs.get_environment("hopper")), {"task": "hopper", "env_steps": 0})
    pi = BraxPolicy("hopper", path)
    action = pi(np.zeros(11, np.float32), np.random.default_rng(0))
    assert action.shape == (3,) and np.all(np.abs(action) <= 1.0)
    assert pi.provenance["task"] == "hopper" and len(pi.provenance["sha256"]) == 16
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ExpertError, match="cannot read expert policy"):
        BraxPolicy("hopper", tmp_path / "bad.npz")


def _brax_transitions(name: str, n_envs: int = 16, n_steps: int = 24):
    """Random-action transitions of brax's env: obs, actions, next obs, brax's reward, its
    forward velocity metric, and whether the step was taken from a live (not done) state."""
    import jax
    import jax.numpy as jnp
    from brax import envs

    env = envs.get_environment(name)
    keys = jax.random.split(jax.random.PRNGKey(0), n_envs)
    state = jax.vmap(env.reset)(keys)

    def body(carry, key):
        st, alive = carry
        a = jax.random.uniform(key, (n_envs, env.action_size), minval=-1.0, maxval=1.0)
        nxt = jax.vmap(env.step)(st, a)
        out = (st.obs, a, nxt.obs, nxt.reward, nxt.metrics["x_velocity"], alive)
        return (nxt, alive & (nxt.done < 0.5)), out

    steps = jax.random.split(jax.random.PRNGKey(1), n_steps)
    _, out = jax.lax.scan(jax.jit(body), (state, jnp.ones(n_envs, bool)), steps)
    return [np.asarray(x).reshape(n_envs * n_steps, *x.shape[2:]) for x in out]


@pytest.mark.slow
@pytest.mark.parametrize("name", LOCOMOTION)
def test_reference_reward_is_brax_reward(name):
    task = get_task(name)
    s, a, s2, r_brax, x_vel, alive = _brax_transitions(name)
    s, a, s2, r_brax, x_vel = (x[alive] for x in (s, a, s2, r_brax, x_vel))
    total, parts = compile_reward(task.reference_reward.read_text(), task.schema)(s, a, s2)
    forward_weight = 1.25 if name == "humanoid" else 1.0
    # every term but the forward one is brax's exactly
    np.testing.assert_allclose(total - parts["forward"], r_brax - forward_weight * x_vel, atol=1e-4)
    # the forward term: observed velocities stand in for brax's displacement / dt
    err = np.abs(parts["forward"] / forward_weight - x_vel)
    assert np.corrcoef(parts["forward"], x_vel)[0, 1] > 0.95
    assert err.mean() < 0.2 * x_vel.std(), (err.mean(), x_vel.std())


@pytest.mark.parametrize(("name", "standing"), [("hopper", 1_000.0), ("walker2d", 1_000.0)])
def test_committed_demos_are_a_moving_experts(name, standing):
    """demos/<name>.npz (brax PPO trained on a GPU, benchmarks/brax_expert_gpu.py): it loads against
    the task's schema, its returns are its rewards' sums, and the expert moves: standing still for
    1000 steps earns ~1000 (the alive bonus), where a 200k-step CPU policy stopped
    (locomotion_speed.md)."""
    from grace.data.trajectories import load_demos
    from tests.conftest import DEMOS

    demos = load_demos(DEMOS / f"{name}.npz", get_task(name))
    assert demos.obs.shape[1] == BRAX_SIZES[name][0] and demos.actions.shape[1] == BRAX_SIZES[name][1]
    assert len(demos.lengths) == 8 and int(demos.lengths.sum()) + 8 == len(demos.obs)  # each with its last obs
    returns = np.add.reduceat(demos.rewards, np.r_[0, np.cumsum(demos.lengths)[:-1]])
    assert returns.mean() == pytest.approx(demos.meta["mean_return"], rel=1e-4)
    assert returns.min() > 2 * standing
    training = demos.meta["expert_training"]
    assert training["trainer"] == "brax.training.agents.ppo" and training["made_by"] == "benchmarks/brax_expert_gpu.py"
