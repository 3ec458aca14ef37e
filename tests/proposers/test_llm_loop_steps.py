"""GRACE's optional LLM steps inside the loop: goal labelling (step 1) and shaping (step 7)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from grace.config import EvolveConfig, LLMConfig
from grace.search.active import needs_shaping
from grace.search.archive import Archive
from tests.fake_openai import FakeOpenAI, Reply, fenced, ok

ROOT = Path(__file__).resolve().parents[2]

MC = '''"""Reward: the car high on the right hill."""

PARAMS = {"t": 0.4}


def reward(s, a, s_next, p):
    return xp.where(s_next.position > p["t"], 1.0, 0.0) + 0.1 * s_next.position
'''
CP = '''"""Reward: pole upright."""

PARAMS = {"k": 0.2}


def reward(s, a, s_next, p):
    return 1.0 - xp.abs(s_next.pole_angle) / p["k"] - 0.01 * xp.abs(s_next.cart_position)
'''


class Labeller:
    """Labels as goals the candidate states whose position is >= 0.5; programs otherwise."""

    def __init__(self, program: str) -> None:
        self.program = program
        self.label_prompts = 0
        self.operators: list[str] = []

    def __call__(self, body: dict[str, Any]) -> Reply:
        text = "\n".join(m["content"] for m in body["messages"])
        if "GOALS:" in text:
            self.label_prompts += 1
            # the prompt lists numbered states: "3: {'position': 0.51, ...}" or similar
            goals = [int(i) for i, pos in re.findall(r"(?m)^\D*?(\d+)\D[^\n]*?position\D+(-?\d+\.\d+)", text)
                     if float(pos) >= 0.5]
            return ok(f"GOALS: {sorted(set(goals))}")
        self.operators.append("shaping" if "rises" in text or "shaping" in text.lower() else "other")
        return ok(fenced(self.program))


def _cfg(out: Path, task: str, url: str, **kw: Any) -> EvolveConfig:
    llm = LLMConfig(base_url=url, model="fake", retries=2, timeout=10.0, label_goals=kw.pop("label_goals", False))
    return EvolveConfig(task=task, demos=str(ROOT / "demos" / f"{task}.npz"), out=str(out), report=False,
                        llm=llm).override({"search.population": 3, "search.islands": 1, "proposer.kind": "llm",
                                           "sandbox.workers": 1, "data.random_negative_episodes": 8}, **kw)


def test_label_goals_sets_positives_and_persists(tmp_path: Path) -> None:
    import grace.api

    handler = Labeller(MC)
    server = FakeOpenAI(handler=handler).start()
    try:
        res = grace.api.evolve(_cfg(tmp_path / "r", "mountaincar", server.url, search={"generations": 1}, label_goals=True),
                               progress=False)
    finally:
        server.stop()
    assert handler.label_prompts >= 1
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    labels = archive.get_meta("goal_labels")
    assert labels, "the LLM's goal labels were not persisted"
    assert res.best is not None and res.best.metrics["n_pos_train"] + res.best.metrics.get("n_pos_heldout", 0) == len(labels)
    calls = sqlite3.connect(tmp_path / "r" / "archive.sqlite").execute(
        "SELECT COUNT(*) FROM calls WHERE operator LIKE 'label_goals%'").fetchone()[0]
    assert calls >= 1


def test_needs_shaping_rule() -> None:
    assert needs_shaping(0.9, {"policy_expert_likeness": 0.1, "heldout_expert_likeness": 0.9})
    assert not needs_shaping(0.9, {"policy_expert_likeness": 0.8, "heldout_expert_likeness": 0.9})
    assert not needs_shaping(0.5, {"policy_expert_likeness": 0.1, "heldout_expert_likeness": 0.9})
    assert not needs_shaping(0.9, {})


@pytest.mark.slow
def test_shaping_runs_after_a_poor_ppo_round(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grace.api
    import grace.search.active as active

    monkeypatch.setattr(active, "needs_shaping", lambda best, info, active=None: True)
    handler = Labeller(CP)
    server = FakeOpenAI(handler=handler).start()
    try:
        grace.api.evolve(_cfg(tmp_path / "r", "cartpole_fixed", server.url, search={"generations": 1, "rounds": 2},
                              ppo={"steps": 20_000, "seeds": 1}), progress=False)
    finally:
        server.stop()
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    shaped = archive.programs(operator="shaping")
    assert shaped and shaped[0].round == 1
    negs = archive.negatives()
    assert [n["version"] for n in negs] == [0, 1] and negs[1]["info"]["needs_shaping"] is True


@pytest.mark.slow
def test_the_loop_asks_the_llm_to_label_the_policy_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import grace.api
    import grace.search.active as active
    from grace.data.rollout import random_negatives

    async def fake_ppo(task, source, cfg, rnd, data=None):  # PPO is tested elsewhere (and takes minutes)
        return random_negatives(task, 3, rnd), {"env_steps": 0}

    monkeypatch.setattr(active, "collect_active_negatives", fake_ppo)
    asked: list[str] = []

    def handler(body: dict[str, Any]) -> Reply:
        text = body["messages"][-1]["content"]
        if "EXPERT:" in text:
            asked.append(text)
            return ok("EXPERT: [0, 1]")
        return ok(fenced(CP))

    server = FakeOpenAI(handler=handler).start()
    try:
        grace.api.evolve(_cfg(tmp_path / "r", "cartpole_fixed", server.url, search={"generations": 1, "rounds": 2},
                              active={"probe": False, "llm_labels": True}), progress=False)
    finally:
        server.stop()
    assert len(asked) == 1 and "0: episode 0, steps 0-" in asked[0]
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    assert archive.get_meta("policy_labels_r1")["expert_like"] == [0, 1]
    info = archive.negatives()[-1]["info"]["policy_labels"]
    assert info["removed"] > 0 and not info["reused"]
