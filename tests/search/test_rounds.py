"""Rounds never make things worse (grace/search/rounds.py): the answer is the best round's winner by
PPO expert-likeness, and a round that does not improve stops the search. PPO and the active-negative
PPO run are faked: the expert-likeness of each round's candidates is the test's input."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import grace
from grace.config import EvolveConfig
from grace.data.rollout import random_negatives
from grace.program import RewardProgram
from grace.search import active, ppo_select
from grace.search.archive import Archive
from grace.search.rounds import best_round, stop_reason, winner_likeness
from tests.conftest import DEMOS

SMALL = {"search.generations": 1, "search.population": 4, "search.islands": 1, "search.rounds": 3,
         "sandbox.workers": 2, "ppo.select_top": 2, "fit.shaping": False, "ppo.select_payment": False,
         "ppo.select_terms": 0, "report": False}
ROUND_LIKENESS = {0: 0.9, 1: 0.5, 2: 0.95}


@pytest.fixture
def fake_ppo(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    rounds_run: list[int] = []

    async def train_and_score(task, cfg, sources, data, seed):
        rnd = (seed - cfg.seed) // 104_729 - 1
        rounds_run.append(rnd)
        return [SimpleNamespace(ok=True, irl_score=ROUND_LIKENESS[rnd] - 0.01 * i, error=None, true_return_mean=0.0,
                                env_steps=0) for i in range(len(sources))], 0.1

    async def collect(task, source, cfg, rnd, data=None):
        return random_negatives(task, 4, rnd), {"env_steps": 0, "policy_expert_likeness": None}

    monkeypatch.setattr(ppo_select, "enabled", lambda cfg, task: True)
    monkeypatch.setattr(ppo_select, "train_and_score", train_and_score)
    monkeypatch.setattr(active, "collect_active_negatives", collect)
    return rounds_run


@pytest.mark.ppo_select
def test_a_round_that_does_not_improve_stops_and_the_best_round_answers(tmp_path, fake_ppo) -> None:
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(tmp_path / "r")).override(SMALL)
    res = grace.evolve(cfg, progress=False)
    assert fake_ppo == [0, 1]  # round 1 (0.5) did not beat round 0 (0.9): round 2 never ran
    assert "round 1 did not improve" in res.stats.stopped_because and "round 0 reached 0.900" in res.stats.stopped_because
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    r0 = archive.get_meta("ppo_select_r0")
    assert winner_likeness(r0) == 0.9 and best_round(archive, 1) == (0, r0["winner"])
    assert res.best is not None and res.best.id == r0["winner"]
    assert RewardProgram.from_file(res.best_path).program_id == res.best.program_id
    assert stop_reason(archive, 1, cfg) and not stop_reason(archive, 0, cfg)
    assert not stop_reason(archive, 1, cfg.override({"active.stop_when_worse": False}))


@pytest.mark.ppo_select
def test_without_stopping_every_round_runs_and_the_best_round_still_answers(tmp_path, fake_ppo) -> None:
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(tmp_path / "r")).override(
        {**SMALL, "active.stop_when_worse": False})
    res = grace.evolve(cfg, progress=False)
    assert fake_ppo == [0, 1, 2]
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    r2 = archive.get_meta("ppo_select_r2")
    assert best_round(archive, 2) == (2, r2["winner"]) and res.best is not None and res.best.id == r2["winner"]
    assert best_round(archive, 1) == (0, archive.get_meta("ppo_select_r0")["winner"])
