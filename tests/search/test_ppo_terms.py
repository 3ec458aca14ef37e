"""Simpler by PPO (grace/search/ppo_terms.py): a term of the winner replaces it only when its policies
are at least as reliably expert-like; the record is persisted and read back as the round's choice."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from grace.config import EvolveConfig
from grace.search import ppo_select, ppo_terms
from grace.search.archive import Archive
from grace.search.best_file import selection_line
from grace.search.ppo_select import meta_key, shown_rows
from grace.search.rounds import winner_likeness
from grace.tasks import get_task
from grace.types import PPOResult

WINNER = '''PARAMS = {"w": 1.0, "c": 0.0}


def reward(s, a, s_next, p):
    up = -p["w"] * xp.abs(s_next.pole_angle - p["c"])
    still = -xp.abs(s_next.cart_velocity)
    return up + still, {"up": up, "still": still}
'''


def _row(archive: Archive, source: str, slot: int, fitness: float, operator: str = "mutate",
         meta: dict | None = None) -> int:
    from grace.program import RewardProgram

    prog = RewardProgram(source)
    rid = archive.add_proposal(program_id=prog.program_id, round=0, generation=1, slot=slot, island=0,
                               operator=operator, parents=[], proposer="offline", source=source, size=prog.size,
                               meta=meta)
    archive.set_result(rid, status="ok", fitness=fitness, heldout=fitness, score=fitness, negatives_version=0)
    return rid


def _setup(tmp_path: Path) -> tuple[Archive, dict, list]:
    archive = Archive(tmp_path / "archive.sqlite")
    win = _row(archive, WINNER, 0, 0.9)
    props, skipped = ppo_terms.proposals(archive.program(win), get_task("cartpole").schema)
    assert not skipped and [p.meta["term"] for p in props] == ["up", "still"]
    assert all(p.operator == "term" and p.parents == (archive.program(win).program_id,) for p in props)
    terms = [archive.program(_row(archive, p.source, 32 + i, 0.8 - 0.1 * i, "term", p.meta))
             for i, p in enumerate(props)]
    record = {"winner": win, "winner_program": archive.program(win).program_id, "why": "the most expert-like policy",
              "seconds": 10.0, "env_steps": 100, "blind": None, "steps": 4096, "seeds": 2,
              "candidates": [{"row": win, "program_id": archive.program(win).program_id, "offline_rank": 0,
                              "fitness": 0.9, "pick": "top", "likeness_seeds": [0.7, 0.7], "expert_likeness": 0.7}]}
    archive.set_meta(meta_key(0), record)
    return archive, record, terms


def _fake(monkeypatch: pytest.MonkeyPatch, per_source: list[list[float]], trained: list) -> None:
    async def fake_train(task, cfg, sources, data, seed, seeds=None):
        trained.append((len(sources), seeds))
        return [PPOResult(true_return_mean=1.0, irl_score=sum(v) / len(v), irl_per_seed=v, env_steps=10)
                for v in per_source], 2.0

    class Disc:
        def reference_likeness(self, data):
            return 1.0

    monkeypatch.setattr(ppo_select, "train_and_score", fake_train)  # the one PPO call of the loop's stages
    monkeypatch.setattr(ppo_terms, "discriminator", lambda cfg, data, task=None: Disc())


def test_a_term_that_teaches_more_reliably_replaces_the_winner_and_is_read_back(tmp_path, monkeypatch) -> None:
    archive, record, terms = _setup(tmp_path)
    trained: list = []
    # the winner fails on two of six seeds; "up" alone imitates on all six; "still" alone never does
    _fake(monkeypatch, [[0.9, 0.0, 0.9, 0.9, 0.0, 0.9], [0.9, 0.95, 0.9, 0.92, 0.94, 0.9], [0.0] * 6], trained)
    cfg = EvolveConfig()
    out = asyncio.run(ppo_terms.simplify(archive, get_task("cartpole"), cfg, 0, {}, record,
                                         archive.program(record["winner"]), terms))
    n = cfg.ppo.seeds + cfg.ppo.select_confirm
    assert trained == [(3, n)]  # the winner and both terms, one batch, on fresh seeds
    stored = archive.get_meta(meta_key(0))
    assert stored == json.loads(json.dumps(out))  # persisted
    assert stored["winner"] == terms[0].id and stored["terms"]["kept"] == terms[0].id
    assert "then its term up alone" in stored["why"]
    assert [t["wins"] for t in stored["terms"]["tried"]] == [True, False]
    assert stored["seconds"] == 12.0 and stored["env_steps"] == 100 + 30 * n
    assert abs(winner_likeness(stored) - 0.9183) < 1e-3  # rounds compare the kept term's likeness
    rows = shown_rows(stored)
    assert [r[1] for r in rows] == ["1", "the choice, again", "its term up alone", "its term still alone"]
    assert [r[4] for r in rows] == ["", "", "yes", ""]
    line = selection_line(archive, archive.program(terms[0].id))["selected by"]
    assert "then 2 terms of its choice alone" in line and "then its term up alone" in line


@pytest.mark.parametrize("term_seeds, why", [
    ([0.5, 0.6, 0.55, 0.5, 0.6, 0.55], "less expert-like beyond the noise"),
    ([0.7, 0.7, 0.7, 0.7, 0.7, 0.7], "a tie keeps the winner"),
])
def test_a_term_that_teaches_no_better_leaves_the_winner(tmp_path, monkeypatch, term_seeds, why) -> None:
    archive, record, terms = _setup(tmp_path)
    _fake(monkeypatch, [[0.7] * 6, term_seeds, [0.0] * 6], [])
    out = asyncio.run(ppo_terms.simplify(archive, get_task("cartpole"), EvolveConfig(), 0, {}, record,
                                         archive.program(record["winner"]), terms))
    assert out["winner"] == record["candidates"][0]["row"] and out["terms"]["kept"] is None, why
    assert out["why"] == "the most expert-like policy" and len(out["candidates"]) == 1


def test_skips_are_recorded_so_a_resume_does_not_try_again(tmp_path, monkeypatch) -> None:
    archive, record, _ = _setup(tmp_path)
    _fake(monkeypatch, [], trained := [])
    cfg = EvolveConfig()
    assert ppo_terms.wanted(cfg, record)
    out = asyncio.run(ppo_terms.simplify(archive, get_task("cartpole"), cfg, 0, {}, record,
                                         archive.program(record["winner"]), [], "the winner has one term"))
    assert trained == [] and out["terms"]["skipped"] == "the winner has one term"
    assert not ppo_terms.wanted(cfg, archive.get_meta(meta_key(0)))
    assert not ppo_terms.wanted(cfg.override({"ppo.select_terms": 0}), {"blind": None})
    assert ppo_terms.wanted(cfg, {"blind": None})
    assert not ppo_terms.wanted(cfg, {"blind": {"shaped": 2}})  # a blind choice: terms would be compared blind
    one = archive.program(_row(archive, WINNER.replace("up + still", "up").replace(', "still": still', ""), 5, 0.5))
    assert ppo_terms.proposals(one, None) == ([], "the winner has one term")


def test_pick_terms_keeps_the_best_scored_distinct_terms(tmp_path) -> None:
    archive, _, terms = _setup(tmp_path)
    failed = archive.program(archive.add_proposal(program_id="", round=0, generation=1, slot=40, island=0,
                                                  operator="term", parents=[], proposer="offline", source="",
                                                  status="invalid"))
    assert [t.id for t in ppo_terms.pick_terms([terms[1], failed, terms[0], terms[0]], 4)] == [terms[0].id, terms[1].id]
    assert [t.id for t in ppo_terms.pick_terms(terms, 1)] == [terms[0].id]


TWO_TERMS = '''"""Reward: the pole upright and the cart still (a seed for test_ppo_terms.py: two named terms)."""

PARAMS = {"w_up": 1.0, "w_still": 0.5}


def reward(s, a, s_next, p):
    up = -p["w_up"] * xp.abs(s_next.pole_angle)
    still = -p["w_still"] * xp.abs(s_next.cart_velocity)
    return up + still, {"up": up, "still": still}
'''


@pytest.mark.ppo_select
def test_a_run_tries_the_winners_terms_as_scored_rows_and_hands_over_what_it_kept(tmp_path) -> None:
    import grace
    from grace.program import RewardProgram, term_names
    from tests.conftest import DEMOS, run_cli

    run, seeds = tmp_path / "r", [tmp_path / "a.py", tmp_path / "b.py"]
    seeds[0].write_text(TWO_TERMS)
    seeds[1].write_text(TWO_TERMS.replace("xp.abs(s_next.cart_velocity)", "xp.abs(s_next.cart_position)"))
    # two two-term seeds fill the population, and no generation drops or mixes terms: the choice has two
    cfg = EvolveConfig(task="cartpole_fixed", demos=str(DEMOS / "cartpole_fixed.npz"), out=str(run), report=False,
                       init=tuple(map(str, seeds))).override(
        {"search.generations": 1, "search.population": 2, "search.islands": 1, "sandbox.workers": 2,
         "search.simplify_rate": 0.0, "search.crossover_rate": 0.0,
         "ppo.select_top": 2, "ppo.select_steps": 4096, "ppo.seeds": 1, "ppo.select_confirm": 1})
    res = grace.evolve(cfg, progress=False)
    archive = Archive(run / "archive.sqlite", create=False)
    rec = archive.get_meta(meta_key(0))
    stage = rec["terms"]
    start = archive.program(stage["from"])
    term_rows = archive.programs(round=0, operator="term")
    archive.close()
    assert res.best is not None and res.best.id == rec["winner"]
    assert RewardProgram((run / "best_reward.py").read_text()).program_id == res.best.program_id
    names = term_names(start.best_source)
    assert len(names) >= 2 and "skipped" not in stage, stage
    # each term scored offline, beyond the generation's slots, parented by the choice
    assert sorted(r.meta["term"] for r in term_rows) == sorted(names)
    assert all(r.slot >= 2 and r.parents == [start.program_id] and r.proposer == "grace"
               and r.status in ("ok", "duplicate", "invalid")
               for r in term_rows)
    assert stage["seeds"] == 2 and len(stage["winner_seeds"]) == 2 and len(stage["tried"]) == len(names)
    assert (rec["winner"] == stage["from"]) == (stage["kept"] is None)
    shown = run_cli("show", str(run), "--no-code")
    assert shown.returncode == 0 and "the choice, again" in shown.stdout
    again = grace.evolve(resume=True, out=str(run), progress=False)  # the stage is not run again
    assert again.best is not None and again.best.id == rec["winner"]
    archive = Archive(run / "archive.sqlite", create=False)
    assert len(archive.programs(round=0, operator="term")) == len(term_rows) and archive.get_meta(meta_key(0)) == rec
    archive.close()
