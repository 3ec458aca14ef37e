"""The Fitness registry, the offline fitness through an executor, and PPO fitness batching."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from grace.config import ConfigError, EvolveConfig, FitSettings, PPOConfig
from grace.data.dataset import build_offline_data
from grace.data.rollout import random_negatives
from grace.data.trajectories import load_demos
from grace.fitness.base import FITNESS, make_fitness
from grace.fitness.offline import OfflineFitness
from grace.fitness.ppo_fitness import PPOFitness
from grace.program import FITTED_KEYS, RewardProgram
from grace.search.executor import LocalExecutor
from grace.tasks import get_task
from grace.types import EvalResult, PPOResult
from tests.conftest import DEMOS, ROOT

REF = RewardProgram.from_file(ROOT / "grace/tasks/rewards/cartpole.py")
BROKEN = RewardProgram("def reward(s, a, s_next, p):\n    return s_next.pole_angle / 0 + xp.log(-1.0 - xp.abs(s_next.pole_angle))\n")
SETTINGS = EvolveConfig(fit=FitSettings(params=False), ppo=PPOConfig(steps=1000, seeds=1))


@pytest.fixture(scope="module")
def setup():
    task = get_task("cartpole")
    demos = load_demos(DEMOS / "cartpole.npz", task)
    data = build_offline_data(task, demos, [("random", random_negatives(task, 16, 0))], seed=0)
    ex = LocalExecutor(task, workers=2)
    yield task, data, ex
    ex.close()


def test_registry_names_and_unknown() -> None:
    assert set(FITNESS) == {"offline", "ppo", "ppo-true"}
    with pytest.raises(ConfigError, match="fitness.kind must be one of offline, ppo, ppo-true, not 'nope'"):
        make_fitness("nope", get_task("cartpole"), None, SETTINGS)  # type: ignore[arg-type]


def test_offline_fitness_scores_through_the_executor(setup) -> None:
    task, data, ex = setup
    fit = make_fitness("offline", task, ex, SETTINGS)
    assert isinstance(fit, OfflineFitness) and fit.name == "offline"
    fit.prepare(data)

    async def go() -> list[EvalResult]:
        return await asyncio.gather(fit.score(REF, 0), fit.score(BROKEN, 0))

    good, bad = asyncio.run(go())
    assert good.ok and good.fitness > 0.5 and good.seconds > 0 and len(good.worst) == 8
    assert {k: v for k, v in good.params.items() if k not in FITTED_KEYS} == REF.params  # fit_params=False
    assert FITTED_KEYS == ("terminal", "floor") and set(FITTED_KEYS) <= set(good.params) and good.metrics["return_ranking_train"] == 1.0  # random episodes fall
    assert not bad.ok and bad.error_kind and bad.fitness is None
    assert "offline GRACE discrimination" in fit.describe(good.fitness, good.heldout_fitness, good.metrics, 0)


def test_ppo_fitness_batches_candidates_that_arrive_together(setup, monkeypatch) -> None:
    task, data, ex = setup
    trained: list[list[str]] = []

    def fake_train(self, sources: list[str]) -> list[PPOResult]:  # PPO itself is tested in test_ppo
        trained.append(sources)
        return [PPOResult(true_return_mean=100.0 * (i + 1), irl_score=0.25 * (i + 1), run_s=1.0)
                for i in range(len(sources))]

    monkeypatch.setattr(PPOFitness, "_train", fake_train)
    ppo = make_fitness("ppo", task, ex, SETTINGS)
    true = make_fitness("ppo-true", task, ex, SETTINGS)
    assert isinstance(ppo, PPOFitness) and ppo.name == "ppo" and true.name == "ppo-true"
    ppo.window = true.window = 5.0  # generous: the offline scores finish within it on a busy machine
    ppo.prepare(data, (0.0, 400.0))
    true.prepare(data, (0.0, 400.0))
    assert ppo.disc is not None and true.disc is None

    async def go(fit: PPOFitness) -> list[EvalResult]:
        return await asyncio.gather(fit.score(REF, 0), fit.score(BROKEN, 0), fit.score(REF.with_params(REF.params | {"centre_weight": 0.0}), 1))

    a = asyncio.run(go(ppo))
    assert ppo.batches == [2] and len(trained[0]) == 2, (ppo.batches, a)  # the broken one never reaches PPO
    assert not a[1].ok
    assert [r.fitness for r in (a[0], a[2])] == [0.25, 0.5]
    assert a[0].metrics["ppo_true_return"] == 100.0 and a[0].metrics["offline_fitness"] > 0.5
    assert a[0].heldout_fitness is None and a[0].worst  # the offline evaluation's examples stay
    b = asyncio.run(go(true))
    assert np.allclose([b[0].fitness, b[2].fitness], [0.25, 0.5])  # (R - R_random) / (R_expert - R_random)
    assert "TRUE return" in true.describe(0.5, None, b[0].metrics, 1)


def test_an_unknown_fitness_is_refused_before_the_run_directory(tmp_path) -> None:
    from tests.conftest import run_cli

    res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"),
                  "--out", str(tmp_path / "run"), "--fitness-kind", "nope")
    lines = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(lines) == 1 and "fitness.kind must be one of offline, ppo, ppo-true" in lines[0], res.stderr
    assert not (tmp_path / "run").exists()
