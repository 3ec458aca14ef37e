"""The adversarial probe (grace/search/probe.py) finds a 1-demo reward's exploit before PPO does,
only ever runs the reward in the sandbox, and its finds make the exploit score worse offline."""

from __future__ import annotations

import asyncio
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from grace.config import FitSettings
from grace.data.dataset import build_offline_data
from grace.data.rollout import random_negatives, rollout
from grace.fitness.applied import APPLIED_FN
from grace.fitness.discriminator import ExpertSimilarity
from grace.fitness.offline import OfflineFitness
from grace.program import RewardProgram
from grace.search.executor import LocalExecutor
from grace.search.negatives import negative_sets
from grace.search.off_expert import expert_threshold
from grace.search.probe import probe_reward, weighted
from grace.tasks import ActionSpace, Field, ObsSchema, Task


class Spinner(gym.Env):
    """A wheel with friction: angle (wrapped to [-pi, pi)) and velocity; torque -1, 0 or +1.
    Full torque spins it at velocity 2; the task is to turn it to angle 0 and hold it there."""

    observation_space = gym.spaces.Box(-10.0, 10.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.state = np.array([self.np_random.uniform(2.0, 2.5), 0.0])
        return self.state.astype(np.float32), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        th, w = self.state
        w = 0.9 * w + 0.2 * (int(action) - 1)
        th = (th + 0.1 * w + np.pi) % (2 * np.pi) - np.pi
        self.state = np.array([th, w])
        return self.state.astype(np.float32), -abs(float(th)), False, False, {}


def _expert() -> Any:
    def policy(obs: np.ndarray, rng: np.random.Generator) -> int:
        target = float(np.clip(-2.0 * obs[0], -1.0, 1.0))  # approach at speed <= 1, then hold
        return 1 + int(np.sign(target - obs[1]) * (abs(target - obs[1]) > 0.05))
    return lambda: policy


TASK = Task(name="spinner", description="Turn the wheel to angle 0 and hold it.",
            schema=ObsSchema((Field("angle"), Field("velocity"))), action=ActionSpace("discrete", n=3),
            kind="keepalive", make_env=lambda: gym.wrappers.TimeLimit(Spinner(), 100), max_steps=100,
            expert=_expert())
EXPLOIT = '''PARAMS = {"w": 1.0}

def reward(s, a, s_next, p):
    return p["w"] * xp.abs(s_next.velocity) - xp.abs(s_next.angle)
'''
"""Pays for velocity, which the expert has only in passing: spinning (|angle| ~ pi/2 on average at
velocity 2) earns ~0.4 a step, holding still at 0 earns 0."""
GOOD = '''def reward(s, a, s_next, p):
    return -xp.abs(s_next.angle)
'''
FAILS = '''def reward(s, a, s_next, p):
    return xp.log(-1.0 - xp.abs(s_next.angle))
'''


@pytest.fixture(scope="module")
def setting():
    demos = rollout(TASK, _expert()(), 1, seed=3)
    rand = random_negatives(TASK, 30, seed=1)
    data = build_offline_data(TASK, demos, [("random", rand)], seed=0)
    executor = LocalExecutor(TASK, workers=1, timeout=30.0)
    yield demos, rand, data, ExpertSimilarity.from_data(data), executor
    executor.close()


def _probe(setting, source: str = EXPLOIT, seed: int = 0, executor: Any = None):
    demos, _, data, disc, ex = setting
    return asyncio.run(probe_reward(TASK, source, executor or ex, demos, disc, data, gamma=0.99, budget=1024,
                                    horizon=30, seed=seed))


def _fitness(executor: LocalExecutor, data: Any, source: str, params: bool = False) -> tuple[float, dict]:
    fit = OfflineFitness(executor, FitSettings(params=params))
    fit.prepare(data)
    res = asyncio.run(fit.score(RewardProgram(source), 0))
    assert res.ok, res.error
    return float(res.fitness), dict(res.params)


def test_the_probe_finds_spinning_and_the_next_round_scores_it_worse(setting) -> None:
    demos, rand, data, disc, executor = setting
    res = _probe(setting)
    info = res.info
    assert info["error"] is None and info["state_set"] and info["rollouts"] >= 1000
    assert info["best_return"] > info["demo_return_at_best"] + 3.0  # spinning out-earns the demo
    assert res.negatives is not None and res.negatives.n_transitions >= 100
    speed = np.abs(res.negatives.transitions()["s_next"][:, 1])
    assert np.percentile(speed, 90) > float(np.abs(demos.obs[:, 1]).max())  # faster than the expert ever moves
    assert disc(res.negatives.transitions()["s_next"]).max() < expert_threshold(disc, data)  # off-expert
    honest = _probe(setting, source=GOOD)  # the true reward: the expert is (near) optimal, little to find
    assert honest.info["best_return"] < honest.info["demo_return_at_best"] + 0.5

    probe_set, copies = weighted(res.negatives, int(np.sum(~data["label"].astype(bool))), 0.25)
    share = probe_set.n_transitions / (probe_set.n_transitions + np.sum(~data["label"].astype(bool)))
    assert copies > 1 and 0.25 <= share < 0.5  # repeated until it makes up at least the share (never twice it)
    after = build_offline_data(TASK, demos, [("random", rand), ("probe-r1", probe_set)], seed=0)
    assert np.sum(after["source"] == list(after["source_names"]).index("probe-r1")) > 0
    (before_exploit, _), (after_exploit, _) = _fitness(executor, data, EXPLOIT), _fitness(executor, after, EXPLOIT)
    (before_good, _), (after_good, _) = _fitness(executor, data, GOOD), _fitness(executor, after, GOOD)
    assert before_exploit > before_good  # on demos + random negatives the exploit wins ...
    assert after_good > after_exploit + 0.03, (after_good, after_exploit)  # ... with the probe's finds it loses (one demo: its last quarter is held out since Few demos item 4; 0.215 vs 0.175 here)
    assert after_exploit < before_exploit - 0.2, (before_exploit, after_exploit)
    # and fitting PARAMS on the next round's data pays less for velocity
    (_, w_before), (_, w_after) = _fitness(executor, data, EXPLOIT, True), _fitness(executor, after, EXPLOIT, True)
    assert w_after["w"] < w_before["w"], (w_before, w_after)


class Recording:
    """An executor proxy that records what it was asked to run."""

    def __init__(self, inner: LocalExecutor) -> None:
        self.inner, self.calls = inner, []

    async def call(self, fn: str, source: str | None, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((fn, source, sum(len(a["s"]) for a in args)))
        return await self.inner.call(fn, source, *args, **kwargs)


def test_the_reward_runs_only_in_the_sandbox_one_call_per_iteration(setting, monkeypatch) -> None:
    import grace.sandbox.compile as compile_mod

    def refuse(*a: Any, **k: Any) -> None:
        raise AssertionError("reward code compiled in the host")

    monkeypatch.setattr(compile_mod, "compile_reward", refuse)
    rec = Recording(setting[4])
    res = _probe(setting, executor=rec)
    assert res.info["error"] is None
    from grace.search.probe import PROBE_ITERATIONS

    assert [c[0] for c in rec.calls] == [APPLIED_FN] * (PROBE_ITERATIONS + 1)
    assert all(c[1] == EXPLOIT for c in rec.calls)
    assert sum(c[2] for c in rec.calls[1:]) == res.info["env_steps"]  # every probed transition, batched


def test_a_failing_reward_is_a_message_not_a_crash(setting) -> None:
    res = _probe(setting, source=FAILS)
    assert res.negatives is None
    assert "failed in the sandbox" in res.info["error"] and "non-finite" in res.info["error"]


def test_the_probe_is_deterministic_under_a_seed(setting) -> None:
    a, b, c = _probe(setting, seed=5), _probe(setting, seed=5), _probe(setting, seed=6)
    assert a.negatives is not None and b.negatives is not None
    np.testing.assert_array_equal(a.negatives.obs, b.negatives.obs)
    assert a.info["best_return"] == b.info["best_return"]
    assert c.negatives is None or c.negatives.obs.shape != a.negatives.obs.shape or \
        not np.array_equal(c.negatives.obs, a.negatives.obs)


def test_a_rounds_probe_set_is_read_back_with_its_round(tmp_path) -> None:
    from grace.search.archive import Archive

    demos = rollout(TASK, _expert()(), 1, seed=3)
    (tmp_path / "negatives").mkdir()
    demos.save(tmp_path / "negatives" / "ppo-round1.npz")
    demos.save(tmp_path / "negatives" / "probe-round1.npz")
    archive = Archive(tmp_path / "archive.sqlite")
    archive.add_negatives(1, "negatives/ppo-round1.npz", "ppo-r1", 1, 0,
                          {"extra_sets": [{"source": "probe-r1", "path": "negatives/probe-round1.npz"}]})
    assert [tag for tag, _ in negative_sets(archive, tmp_path, TASK, 1)] == ["ppo-r1", "probe-r1"]
    assert negative_sets(archive, tmp_path, TASK, 0) == []


def test_a_round_saves_the_probes_finds_beside_the_ppo_set(setting, tmp_path, monkeypatch) -> None:
    from grace.config import EvolveConfig
    from grace.search import active
    from grace.search.archive import Archive

    demos, rand, data, _, executor = setting

    async def fake_ppo(task: Task, source: str, cfg: Any, rnd: int, data: Any = None) -> tuple[Any, dict]:
        return rand, {"env_steps": 10}  # PPO itself is tested elsewhere (it needs a JAX twin)

    monkeypatch.setattr(active, "collect_active_negatives", fake_ppo)
    archive = Archive(tmp_path / "archive.sqlite")
    best = type("Row", (), {"best_source": EXPLOIT, "fitness": 0.7, "program_id": "abc"})()
    lines: list[str] = []
    cfg = EvolveConfig(demos="x").override({"active.probe_horizon": 30, "fit.gamma": 0.99})
    asyncio.run(active.round_negatives(archive, tmp_path, TASK, cfg, 1, best, data, demos, executor, lines.append))
    row = archive.negatives()[0]
    probe_info = row["info"]["probe"]
    assert probe_info["best_return"] > probe_info["demo_return_at_best"] and probe_info["copies"] >= 1
    assert [tag for tag, _ in negative_sets(archive, tmp_path, TASK, 1)] == ["ppo-r1", "probe-r1"]
    assert lines[0].startswith("probe: 1024 rollouts") and "become negatives" in lines[0]
    from grace.report import _negatives

    shown = _negatives(archive)["sets"]
    assert [r["source"] for r in shown] == ["ppo-r1", "probe-r1"] and shown[0]["note"] == lines[0]
    off = EvolveConfig(demos="x").override({"active.probe": False})
    asyncio.run(active.round_negatives(archive, tmp_path, TASK, off, 2, best, data, demos, executor))
    assert archive.negatives()[1]["info"]["probe"] is None


def test_probe_settings_are_checked() -> None:
    from grace.config import ConfigError, EvolveConfig

    cfg = EvolveConfig(demos="x")
    assert cfg.active.probe and cfg.active.probe_budget > 0  # on by default (where the task has a numpy env)
    for bad in ({"active.probe_share": 1.0}, {"active.probe_horizon": 0}, {"active.probe_budget": -1}):
        with pytest.raises(ConfigError, match="active.probe"):
            cfg.override(bad).validate()
    from grace.search.probe import enabled

    assert enabled(cfg, TASK) and not enabled(cfg.override({"active.probe_budget": 0}), TASK)
    assert not enabled(cfg, Task(name="nojax", description="", schema=TASK.schema, action=TASK.action, kind="keepalive"))


def test_the_loop_probes_each_rounds_best_before_ppo(tmp_path, monkeypatch) -> None:
    import grace
    from grace.config import EvolveConfig
    from grace.search import active
    from grace.search.archive import Archive
    from grace.search.negatives import read_run_inputs

    async def fake_ppo(task: Task, source: str, cfg: Any, rnd: int, data: Any = None) -> tuple[Any, dict]:
        return random_negatives(task, 2, rnd), {"env_steps": 0}

    monkeypatch.setattr(active, "collect_active_negatives", fake_ppo)
    demos = rollout(TASK, _expert()(), 1, seed=3).save(tmp_path / "demos.npz")
    (tmp_path / "exploit.py").write_text(EXPLOIT)
    cfg = EvolveConfig(demos=str(demos), out=str(tmp_path / "r"), init=(str(tmp_path / "exploit.py"),)).override(
        {"search.generations": 1, "search.population": 2, "search.islands": 1, "search.rounds": 2,
         "sandbox.workers": 1, "fit.shaping": False, "fit.params": False, "report": False,
         "data.random_negative_episodes": 5,
         "active.probe_budget": 256, "active.probe_horizon": 30})
    grace.evolve(cfg, task=TASK, progress=False)
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    info = archive.negatives()[-1]["info"]
    assert info["probe"]["error"] is None and info["probe"]["rollouts"] >= 200 and info["probe"]["seconds"] > 0
    tags = [tag for tag, _ in read_run_inputs(archive, tmp_path / "r", TASK, rollout(TASK, _expert()(), 1, 3)).negatives]
    assert tags == ["random", "ppo-r1", "probe-r1"]  # the exploit it found is in round 1's data


class HiddenSpinner(Spinner):
    """The same wheel with its state where the probe cannot set it: it starts from resets."""

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        obs, info = super().reset(seed=seed)
        self._hidden = self.__dict__.pop("state")
        return obs, info

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.state = self._hidden
        out = super().step(action)
        self._hidden = self.__dict__.pop("state")
        return out


def test_an_env_whose_state_cannot_be_set_is_probed_from_resets(setting) -> None:
    from dataclasses import replace

    demos, _, data, disc, executor = setting
    hidden = replace(TASK, make_env=lambda: gym.wrappers.TimeLimit(HiddenSpinner(), 100))
    res = asyncio.run(probe_reward(hidden, EXPLOIT, executor, demos, disc, data, gamma=0.99, budget=512, horizon=30))
    assert res.info["error"] is None and res.info["state_set"] is False
    assert res.info["best_return"] > res.info["demo_return_at_best"] and res.negatives is not None


@pytest.mark.parametrize("name", ["pendulum", "acrobot", "mountaincar_fixed"])
def test_classic_control_envs_are_put_in_demo_states(name: str, root) -> None:
    from grace.data.trajectories import load_demos
    from grace.search.probe import replays
    from grace.tasks import get_task

    task = get_task(name)
    env = task.make_env()
    env.reset(seed=0)
    ep = list(load_demos(root / "demos" / f"{name}.npz", task).episodes())[0]
    assert replays(env, ep, task)
    ep.obs = ep.obs.copy()
    ep.obs[1] += 0.5  # a demo the env does not reproduce: not settable
    assert not replays(env, ep, task)

