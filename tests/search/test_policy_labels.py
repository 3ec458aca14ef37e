"""GRACE step 1 on policy data (`active.llm_labels`, grace/search/policy_labels.py): the LLM labels
segments of PPO's rollouts; the expert-like ones are not negatives; the labels are persisted and
reused on resume; an unusable reply keeps every rollout state negative. PPO is faked (a fixed
Trajectories), the LLM is the suite's fake OpenAI server, the reward is scored by a fake executor."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grace.config import EvolveConfig, LLMConfig
from grace.data.trajectories import Episode, Trajectories, load_demos
from grace.proposers.base import TaskContext
from grace.proposers.llm.openai_api import LLMProposer
from grace.proposers.offline.operator import OfflineProposer
from grace.search import active, policy_labels
from grace.search.archive import Archive
from grace.tasks import get_task
from tests.fake_openai import FakeOpenAI, ok

TASK = get_task("cartpole")
LENGTH = 10


def rollouts() -> Trajectories:
    """Two episodes of 10 steps; cart_position = 100 * episode + step, so each state names itself."""
    eps = []
    for e in range(2):
        obs = np.zeros((LENGTH + 1, 4), np.float32)
        obs[:, 0] = 100 * e + np.arange(LENGTH + 1)
        eps.append(Episode(obs, np.zeros(LENGTH, np.int64), np.ones(LENGTH, np.float32), False, True))
    return Trajectories.from_episodes(eps)


class Rewards:
    """The executor's reward scoring, faked: the best reward pays cart_position / 10."""

    calls = 0

    async def rewards(self, source: str, batch: dict[str, np.ndarray]) -> np.ndarray:
        self.calls += 1
        return batch["s_next"][:, 0] / 10.0


def ctx() -> TaskContext:
    state = {"cart_position": 0.0, "cart_velocity": 0.0, "pole_angle": 0.0, "pole_angular_velocity": 0.0}
    return TaskContext(name=TASK.name, description=TASK.description, schema=TASK.schema, action=TASK.action,
                       kind=TASK.kind, expert_states=[state])


def cfg(**extra: Any) -> EvolveConfig:
    return EvolveConfig(demos="x").override({"active.probe": False, "active.llm_labels": True,
                                             "active.llm_label_episodes": 2, "active.llm_label_segments": 2, **extra})


def proposer(server: FakeOpenAI, archive: Archive) -> LLMProposer:
    prop = LLMProposer(LLMConfig(base_url=server.url, model="fake", timeout=5.0, retries=1), recorder=archive)
    prop.backoff_base, prop.backoff_cap = 0.01, 0.1
    return prop


def best() -> Any:
    return type("Row", (), {"best_source": "unused: rewards are faked", "fitness": 0.7, "program_id": "abc"})()


def run_round(tmp_path: Path, archive: Archive, labeller: Any, monkeypatch: pytest.MonkeyPatch,
              settings: EvolveConfig | None = None, rnd: int = 1) -> tuple[dict[str, Any], Trajectories, list[str]]:
    async def fake_ppo(task: Any, source: str, cfg: Any, rnd: int, data: Any = None) -> tuple[Trajectories, dict]:
        return rollouts(), {"env_steps": 0}

    monkeypatch.setattr(active, "collect_active_negatives", fake_ppo)
    lines: list[str] = []
    asyncio.run(active.round_negatives(archive, tmp_path, TASK, settings or cfg(), rnd, best(), None, rollouts(),
                                       Rewards(), lines.append, labeller))  # type: ignore[arg-type]
    row = archive.negatives()[-1]
    return row["info"], load_demos(tmp_path / row["path"], TASK), lines


def prompt(server: FakeOpenAI, k: int = 0) -> str:
    return server.requests[k]["json"]["messages"][-1]["content"]


def test_segments_cover_the_chosen_episodes_and_are_cut_out_exactly() -> None:
    traj = rollouts()
    segs = policy_labels.candidate_segments(traj, episodes=2, per_episode=3)
    assert segs == [(0, 0, 3), (0, 3, 6), (0, 6, 10), (1, 0, 3), (1, 3, 6), (1, 6, 10)]
    assert policy_labels.candidate_segments(traj, episodes=1, per_episode=2) == [(0, 0, 5), (0, 5, 10)]
    kept, removed = policy_labels.without_segments(traj, [(0, 3, 6), (1, 0, 3)])
    assert removed == 6 and kept.n_transitions == 14 and kept.n_episodes == 3
    firsts = sorted(float(ep.obs[0, 0]) for ep in kept.episodes())
    assert firsts == [0.0, 6.0, 103.0]  # episode 0's runs [0, 3) and [6, 10), episode 1's [3, 10)
    everything, removed = policy_labels.without_segments(traj, [(0, 0, 10), (1, 0, 10)])
    assert everything.n_transitions == 1 and removed == 19  # a negative set is never empty


def test_the_llm_labels_remove_exactly_those_segments_and_are_persisted(tmp_path, monkeypatch) -> None:
    server = FakeOpenAI(handler=lambda body: ok("Segments 1 and 2 balance like the expert.\nEXPERT: [1, 2]")).start()
    try:
        archive = Archive(tmp_path / "archive.sqlite")
        info, negs, lines = run_round(tmp_path, archive, (proposer(server, archive), ctx()), monkeypatch)
    finally:
        server.stop()
    text = prompt(server)
    # every candidate is listed: its number, episode, steps, middle state and the best reward there
    for k, (e, steps, mid) in enumerate([(0, "0-4", 3), (0, "5-9", 8), (1, "0-4", 103), (1, "5-9", 108)]):
        line = next(ln for ln in text.splitlines() if ln.startswith(f"{k}: "))
        assert f"episode {e}, steps {steps}" in line and f"cart_position: {mid}" in line
        assert f"reward {mid / 10:g}" in line
    assert "EXPERT:" in text and len(server.requests) == 1
    # segment 1 = episode 0 steps 5-9, segment 2 = episode 1 steps 0-4: their s_next are gone
    seen = {float(x) for ep in negs.episodes() for x in ep.obs[1:, 0]}
    assert seen == {float(x) for x in [*range(1, 6), *range(106, 111)]}
    assert negs.n_transitions == 10 and info["policy_labels"]["removed"] == 10
    assert archive.get_meta("policy_labels_r1")["expert_like"] == [1, 2]
    assert "2 of 4 segments" in lines[0] and "10 of 20 transitions" in lines[0]
    from grace.report import _negatives

    assert _negatives(archive)["sets"][-1]["note"] == lines[0]
    calls = sqlite3.connect(tmp_path / "archive.sqlite").execute(
        "SELECT operator, reply FROM calls").fetchall()
    assert [c[0] for c in calls] == ["label_policy"] and "EXPERT: [1, 2]" in calls[0][1]


def test_labels_are_persisted_before_use_and_a_resumed_round_reuses_them(tmp_path, monkeypatch) -> None:
    server = FakeOpenAI(handler=lambda body: ok("EXPERT: [0]")).start()
    try:
        archive = Archive(tmp_path / "archive.sqlite")

        def boom(traj: Trajectories, segments: list) -> Any:
            raise RuntimeError("killed while using the labels")

        with monkeypatch.context() as m:
            m.setattr(policy_labels, "without_segments", boom)
            with pytest.raises(RuntimeError, match="killed"):
                run_round(tmp_path, archive, (proposer(server, archive), ctx()), monkeypatch)
        assert archive.get_meta("policy_labels_r1")["expert_like"] == [0] and len(server.requests) == 1
        # the resumed run: a fresh proposer on the same archive; the labels come from the archive
        info, negs, lines = run_round(tmp_path, archive, (proposer(server, archive), ctx()), monkeypatch)
    finally:
        server.stop()
    assert len(server.requests) == 1 and info["policy_labels"]["reused"] is True and "(labels reused)" in lines[0]
    assert negs.n_transitions == 15 and min(float(x) for x in negs.obs[:, 0]) == 5.0  # episode 0 steps 0-4 gone


@pytest.mark.parametrize("replies", [["I cannot tell.", "Still no idea."], None])
def test_no_usable_labels_keep_every_rollout_state_negative(tmp_path, monkeypatch, replies) -> None:
    server = FakeOpenAI().start()
    for text in replies or []:
        server.push(ok(text))
    try:
        archive = Archive(tmp_path / "archive.sqlite")
        prop = proposer(server, archive) if replies else OfflineProposer()
        info, negs, lines = run_round(tmp_path, archive, (prop, ctx()), monkeypatch)
    finally:
        server.stop()
    assert negs.n_transitions == 20 and info["policy_labels"]["expert_like"] is None
    assert lines[0].startswith("warning: policy labels") and "stays negative" in lines[0]
    assert len(server.requests) == (2 if replies else 0)  # the reply and one repair request
    if replies:
        assert prop.stats["policy_labels_failed"] == 1


def test_off_by_default_and_the_labeller_is_never_asked(tmp_path, monkeypatch) -> None:
    class Never:
        async def label_policy(self, *args: Any) -> None:
            raise AssertionError("asked without active.llm_labels")

    archive = Archive(tmp_path / "archive.sqlite")
    info, negs, _ = run_round(tmp_path, archive, (Never(), ctx()), monkeypatch,
                              cfg(**{"active.llm_labels": False}))
    assert negs.n_transitions == 20 and "policy_labels" not in info
    assert not EvolveConfig().active.llm_labels
    with pytest.raises(Exception, match="llm_label_episodes"):
        cfg(**{"active.llm_label_segments": 0}).validate()


def test_policy_replies_are_parsed_after_the_reasoning() -> None:
    from grace.proposers.llm.labels import parse_policy_indices

    assert parse_policy_indices("<think>EXPERT: [9]</think> EXPERT: [2, 0, 7]", 3) == [0, 2]
    assert parse_policy_indices("expert = []", 3) == [] and parse_policy_indices("none", 3) is None
