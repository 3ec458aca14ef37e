"""PPO fitness: many candidates per compile, per-candidate failures, `grace train` (slow)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from grace.data.trajectories import Trajectories  # noqa: E402
from grace.fitness import ppo, ppo_batch  # noqa: E402
from grace.tasks import get_task  # noqa: E402
from grace.types import PPOJob, PPOResult  # noqa: E402

TINY = {"num_envs": 4, "num_steps": 32, "num_epochs": 1, "num_minibatches": 2}
UPRIGHT = "def reward(s, a, s_next, p):\n    return 1.0 - xp.abs(s_next.pole_angle)\n"
CENTRE = 'PARAMS = {"w": 0.5}\n\ndef reward(s, a, s_next, p):\n    return -p["w"] * xp.abs(s_next.cart_position), {"c": s_next.cart_position}\n'
ACTION = "def reward(s, a, s_next, p):\n    return xp.where(a == 1, 1.0, 0.0)\n"
NO_TRACE = "def reward(s, a, s_next, p):\n    if s_next.pole_angle > 0:\n        return 1.0\n    return 0.0\n"
BAD_FIELD = "def reward(s, a, s_next, p):\n    return s_next.no_such_field\n"


def test_batch_compiles_once_and_reports_failures_per_candidate(monkeypatch: pytest.MonkeyPatch) -> None:
    builds: list[int] = []
    real = ppo_batch.build_trainer

    def counting(env, params, branches, *args, **kwargs):
        builds.append(len(branches))
        return real(env, params, branches, *args, **kwargs)

    monkeypatch.setattr(ppo_batch, "build_trainer", counting)
    scores = []

    class Disc:  # a distribution match (like ExpertSimilarity): scored per policy and per seed
        def __call__(self, states: np.ndarray) -> np.ndarray:
            raise AssertionError("a likeness scorer is not called per state")

        def policy_likeness(self, episodes: list[np.ndarray], terminated: list[bool]) -> float:
            assert len(episodes) == len(terminated)
            states = np.concatenate(episodes)
            scores.append(states.shape)
            return float(np.mean(np.abs(states[:, 2]) < 0.1))

    disc = Disc()

    sources = [UPRIGHT, NO_TRACE, CENTRE, BAD_FIELD, ACTION]
    job = PPOJob(tuple(sources), steps=256, seeds=2, algo_kwargs=TINY, score_states=disc,
                 keep_trajectories=True, eval_episodes=2)
    res = ppo.train_candidates("cartpole_fixed", job)
    assert builds == [3]  # one traced program for the three good candidates
    assert all(isinstance(r, PPOResult) for r in res)
    assert [r.ok for r in res] == [True, False, True, False, True]
    assert "trace" in res[1].error and "Bool" in res[1].error
    assert "no_such_field" in res[3].error
    good = [res[i] for i in (0, 2, 4)]
    assert len({r.compile_s for r in good}) == 1 and all(r.batch_size == 3 for r in good)
    for r in good:
        assert len(r.true_returns) == 2 and 0 <= r.true_return_mean <= 500
        assert 0.0 <= r.success_rate <= 1.0 and r.irl_score is not None
        assert r.irl_per_seed is not None and len(r.irl_per_seed) == 2  # each seed's visits on their own
        assert min(r.irl_per_seed) <= r.irl_score <= max(r.irl_per_seed)  # a mean of fractions: between them
        traj = r.trajectories
        assert isinstance(traj, Trajectories) and traj.n_episodes == 4 and traj.obs_dim == 4
        assert np.allclose(traj.returns().reshape(2, 2).mean(1), r.true_returns)
        eps = list(traj.episodes())  # each seed's late |field| means, from its own two episodes
        for s, late in enumerate(r.late_fields):
            obs = np.concatenate([ep.obs[len(ep.obs) // 2:] for ep in eps[2 * s:2 * s + 2]])
            assert list(late) == ["cart_position", "cart_velocity", "pole_angle", "pole_angular_velocity"]
            assert np.allclose(list(late.values()), np.abs(obs).mean(0))
    assert len(scores) == 3 * 3  # all seeds, then each seed


def test_all_candidates_fail_without_training() -> None:
    res = ppo.train_candidates("cartpole_fixed", PPOJob((NO_TRACE, "not python ("), steps=256, seeds=1))
    assert [r.ok for r in res] == [False, False]


def test_check_branch_shapes() -> None:
    import jax
    import jax.numpy as jnp

    act = jax.ShapeDtypeStruct((), jnp.int32)
    zero = jnp.zeros((), jnp.float32)
    assert ppo_batch.check_branch(lambda s, a, s2, r, d: (s2[0], zero), 4, act) is None
    assert "(reward, shaping)" in ppo_batch.check_branch(lambda s, a, s2, r, d: s2[0], 4, act)
    assert "scalar" in ppo_batch.check_branch(lambda s, a, s2, r, d: (s2, zero), 4, act)
    assert "shaping must be a float" in ppo_batch.check_branch(lambda s, a, s2, r, d: (s2[0], a), 4, act)


def test_symlog_transforms_the_reward_never_the_shaping() -> None:
    """PPO's reward_transform applies to the reward; the shaping term is added after it
    untransformed, so it stays potential-based for whatever reward PPO sees."""
    import jax
    import jax.numpy as jnp

    from grace.tasks.jax_envs import make

    base, params = make("CartPole-v1")
    cp = ppo_batch.CandParams(params, jnp.int32(0))

    def branch(s, a, s2, r, d):  # noqa: ANN001, ANN202
        return jnp.float32(-9.0), 100.0 * s2[2]

    key = jax.random.PRNGKey(3)
    for transform, expect in (("symlog", -np.log1p(9.0)), ("none", -9.0)):
        env = ppo_batch.CandidateRewardEnv(base, [branch], transform)
        obs, st = env.reset_env(key, cp)
        obs2, _, r, _, _ = env.step_env(key, st, 1, cp)
        assert float(r) == pytest.approx(expect + 100.0 * float(obs2[2]), rel=1e-5)


def test_ppo_pays_every_step_less_the_absorbing_reward_and_nothing_on_termination() -> None:
    """A terminal value stands for an absorbing state's per-step reward forever: PPO is paid the
    program's reward less that on every step, the transform applied per step, and an ended episode
    is worth 0, as rejax values it (paid as a lump on termination, the CartPole winner of quality13
    trained to 500 steps on 7 of 10 seeds; paid this way, 10 of 10)."""
    import jax
    import jax.numpy as jnp

    from grace.fitness.ppo import _branch
    from grace.fitness.returns import terminal_value
    from grace.tasks.jax_envs import make

    gamma = 0.99
    base, params = make("CartPole-v1")
    cp = ppo_batch.CandParams(params, jnp.int32(0))

    def compiled(s, a, s2, p):  # noqa: ANN001, ANN202
        return jnp.float32(2.0), {}

    branch = _branch(compiled, {"terminal": terminal_value(-1.0, gamma)}, gamma)  # falling over: -1 forever
    for transform, step_pay in (("symlog", np.log1p(3.0)), ("none", 3.0)):
        env = ppo_batch.CandidateRewardEnv(base, [branch], transform)
        key = jax.random.PRNGKey(0)
        obs, st = env.reset_env(key, cp)
        paid, done = [], False
        while not done:  # push right until the pole falls: termination, not the time limit
            key, k = jax.random.split(key)
            obs, st, r, done, _ = env.step_env(k, st, 1, cp)
            paid.append(float(r))
        assert len(paid) < 100 and paid == pytest.approx([step_pay] * len(paid), rel=1e-5)


def test_ppo_pays_a_goal_as_a_lump_on_steps_shifted_by_the_floor() -> None:
    """A terminal value above the floor (reaching a goal: as good as the best state forever) is paid
    as the program's reward less the floor on every step and the rest of the terminal value on the
    terminating transition, which a per-step transform sees as the absorbing steps it stands for."""
    import jax
    import jax.numpy as jnp

    from grace.fitness.ppo import _branch
    from grace.fitness.returns import terminal_value
    from grace.tasks.jax_envs import make

    gamma = 0.99
    base, params = make("CartPole-v1")
    cp = ppo_batch.CandParams(params, jnp.int32(0))

    def compiled(s, a, s2, p):  # noqa: ANN001, ANN202
        return jnp.float32(2.0), {}

    branch = _branch(compiled, {"terminal": terminal_value(5.0, gamma), "floor": 1.0}, gamma)
    for transform, step_pay, lump in (("symlog", np.log1p(1.0), terminal_value(np.log1p(4.0), gamma)),
                                      ("none", 1.0, terminal_value(4.0, gamma))):
        env = ppo_batch.CandidateRewardEnv(base, [branch], transform, gamma)
        key = jax.random.PRNGKey(0)
        obs, st = env.reset_env(key, cp)
        paid, done = [], False
        while not done:  # the pole falls: here it stands for reaching the goal
            key, k = jax.random.split(key)
            obs, st, r, done, _ = env.step_env(k, st, 1, cp)
            paid.append(float(r))
        assert paid == pytest.approx([step_pay] * (len(paid) - 1) + [step_pay + lump], rel=1e-5)


def test_rollout_ends_a_fixed_horizon_episode_where_the_wrapped_env_terminates() -> None:
    """On fixed-horizon MountainCar an episode runs its 200 steps; `inner_ends` says when the car
    first reached the flag, and the policy is compared with the experts up to there, as an episode
    that terminated (the demos come from terminating MountainCar)."""
    import jax
    import jax.numpy as jnp

    from grace.data.trajectories import Episode
    from grace.fitness.ppo import _as_compared
    from grace.tasks.jax_envs import make

    def swing(obs, key):  # noqa: ANN001, ANN202 - push with the velocity: reaches the flag
        return jnp.where(obs[1] > 0, 2, 0)

    for fixed in (True, False):
        env, params = make("MountainCar-v0", fixed_horizon=fixed)
        out = ppo_batch.rollout(swing, env, params, jax.random.PRNGKey(0), 2, 200, True)
        ends, lengths = np.asarray(out["inner_ends"]), np.asarray(out["lengths"])
        if fixed:
            assert lengths.tolist() == [200, 200] and not np.asarray(out["terminated"]).any()
            assert (ends > 50).all() and (ends < 200).all()
        else:
            assert (lengths < 200).all() and np.asarray(out["terminated"]).all() and (ends == 0).all()
    eps = [Episode(obs=np.arange(11.0)[:, None], actions=np.zeros(10), rewards=None, terminated=False, truncated=True)] * 2
    states, ended = _as_compared(eps, np.array([4, 0]))
    assert [s[:, 0].tolist() for s in states] == [[1.0, 2.0, 3.0, 4.0], list(np.arange(1.0, 11.0))]
    assert ended == [True, False]


def test_config_defaults_and_overrides() -> None:
    cfg = ppo_batch.ppo_config(True, 10_000, {"num_envs": 8}, n_evals=4)
    assert cfg["num_envs"] == 8 and cfg["total_timesteps"] == 10_000
    assert cfg["eval_freq"] % (8 * cfg["num_steps"]) == 0 and not cfg["skip_initial_evaluation"]
    assert ppo_batch.ppo_config(False, 10_000, None, 1)["skip_initial_evaluation"]


@pytest.mark.slow
def test_policy_rollouts_from_the_worker_are_negatives() -> None:
    job = PPOJob((UPRIGHT,), steps=20_000, seeds=1, keep_trajectories=True, eval_episodes=3)
    res = ppo.run_ppo("cartpole_fixed", job)[0]
    traj = res.trajectories
    assert traj.n_episodes == 3 and traj.meta["policy"] == "ppo" and res.env_steps > 0
    traj.validate(get_task("cartpole_fixed"), "negatives")


@pytest.mark.slow
def test_grace_train_reference_matches_true_reward_bad_does_not(tmp_path) -> None:
    from grace.train import train_reward

    task = get_task("cartpole_fixed")
    good = train_reward(task.reference_reward, task, steps=400_000, seeds=2, out_dir=tmp_path / "good")
    assert good["baseline"]["true_return_mean"] >= 450
    assert good["within_5pct"], good
    assert (tmp_path / "good" / "learning_curve.png").stat().st_size > 1000
    assert json.loads((tmp_path / "good" / "summary.json").read_text())["task"] == "cartpole_fixed"
    bad_src = "def reward(s, a, s_next, p):\n    return s_next.pole_angle ** 2\n"
    bad = train_reward(bad_src, task, steps=400_000, seeds=2)
    assert not bad["within_5pct"]
    assert bad["reward"]["true_return_mean"] < 0.5 * bad["baseline"]["true_return_mean"]


def test_rollout_episodes_keep_the_action_shape_of_continuous_tasks() -> None:
    """PPO rollouts become active negatives: 1-D continuous actions must come back as (T, 1)."""
    import numpy as np

    from grace.data.trajectories import Trajectories
    from grace.fitness.ppo import _episodes
    from grace.tasks import get_task

    task = get_task("pendulum")
    final = {"returns": np.zeros(2), "lengths": np.array([5, 3]), "obs0": np.zeros((2, 3)),
             "obs": np.ones((2, 6, 3)), "actions": np.ones((2, 6)), "rewards": np.zeros((2, 6)),
             "terminated": np.array([False, False])}
    traj = Trajectories.from_episodes(_episodes(final, task.action.dim))
    traj.validate(task)
    assert traj.actions.shape == (8, 1)
    discrete = Trajectories.from_episodes(_episodes(final | {"obs0": np.zeros((2, 4)), "obs": np.ones((2, 6, 4))}, None))
    discrete.validate(get_task("cartpole"))
    assert discrete.actions.shape == (8,)
