"""PPO in the loop (grace/search/ppo_select.py): a round's winner is the top candidate whose reward
trains the most expert-like policy; the choice is persisted, written to best_reward.py, shown by
`grace show`, and kept by a resume."""

from __future__ import annotations

import dataclasses

import pytest

import grace
from grace.config import EvolveConfig
from grace.program import RewardProgram
from grace.search.archive import Archive, ProgramRow
from grace.search.ppo_select import enabled
from grace.tasks import get_task
from tests.conftest import DEMOS, run_cli

SMALL = {"search.generations": 1, "search.population": 4, "search.islands": 1, "sandbox.workers": 2,
         "ppo.select_top": 3, "ppo.select_steps": 4096, "ppo.seeds": 1}


def test_enabled_only_with_a_jax_env_an_offline_fitness_and_k_at_least_2() -> None:
    cfg = EvolveConfig()
    assert enabled(cfg, get_task("cartpole"))
    assert not enabled(cfg.override({"ppo.select_top": 0}), get_task("cartpole"))
    assert not enabled(cfg.override({"ppo.select_top": 1}), get_task("cartpole"))
    assert not enabled(cfg.override({"fitness.kind": "ppo"}), get_task("cartpole"))
    assert not enabled(cfg, dataclasses.replace(get_task("cartpole"), make_jax_env=None))


@pytest.mark.ppo_select
def test_the_winner_is_chosen_by_ppo_persisted_and_kept_on_resume(tmp_path) -> None:
    run = tmp_path / "r"
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), report=False).override(
        {**SMALL, "ppo.select_terms": 0})  # the term stage: test_ppo_terms.py
    res = grace.evolve(cfg, progress=False)
    archive = Archive(run / "archive.sqlite", create=False)
    rec = archive.get_meta("ppo_select_r0")
    top = archive.top(3)
    archive.close()
    assert rec is not None and rec["steps"] == 4096 and rec["seconds"] > 0
    picks = [c["pick"] for c in rec["candidates"]]
    assert picks == sorted(picks, key=["top", "heldout", "dense"].index)  # top, held-out picks, dense versions
    top_rows = [c for c in rec["candidates"] if c["pick"] == "top"]
    assert [c["row"] for c in top_rows] == [r.id for r in top]  # the top 3 distinct, in offline order
    held = [c for c in rec["candidates"] if c["pick"] == "heldout"]  # generalise better than every top one
    assert all(h["heldout"] > max(t["heldout"] for t in top_rows) for h in held)
    dense = [c for c in rec["candidates"] if c["dense"]]  # then the dense versions
    assert 1 <= len(dense) <= 2 + len(held) and rec["candidates"][-len(dense):] == dense
    assert not {c["program_id"] for c in dense} & {r.program_id for r in top}
    liked = [c for c in rec["candidates"] if c["expert_likeness"] is not None]
    assert liked and rec["winner"] == max(liked, key=lambda c: (c["expert_likeness"], -c["offline_rank"]))["row"]
    assert res.best is not None and res.best.id == rec["winner"]
    text = (run / "best_reward.py").read_text()
    assert "selected by: PPO in the loop over the top" in text
    assert RewardProgram(text).program_id == res.best.program_id
    shown = run_cli("show", str(run), "--no-code")
    assert shown.returncode == 0 and "PPO in the loop, round 0" in shown.stdout and "yes" in shown.stdout
    # terminating CartPole: keep-alive, demos from the env PPO trains on
    assert rec["compared_with"] == "the positive (expert or goal) states, and the share of episodes that end and how long they run"
    assert "policies compared with: the positive" in shown.stdout.replace("\n", " ")
    # a resume of the finished run keeps the persisted choice (PPO does not train again)
    again = grace.evolve(resume=True, out=str(run), progress=False)
    assert again.best is not None and again.best.id == rec["winner"]


def test_diverse_candidates_are_the_best_of_different_rankings(tmp_path) -> None:
    """`ppo.select_similarity` < 1: a candidate whose reward ranks the states like one already chosen
    is skipped for the next different one (rewards faked: the ranking is the input)."""
    import asyncio

    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.search import ppo_select
    from grace.search.select import truncate

    run = tmp_path / "r"
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), report=False).override(
        {**SMALL, "search.population": 8})
    grace.evolve(cfg, progress=False)
    archive = Archive(run / "archive.sqlite", create=False)
    top = truncate(archive.programs(round=0, status="ok"), 8)
    assert len(top) >= 6
    task = get_task("cartpole")
    data = build_offline_data(task, load_demos(DEMOS / "cartpole.npz", task), [("random", random_negatives(task, 4, 0))])
    class Rewards:  # every program ranks states by the first observation, but `odd` by minus it
        def __init__(self, odd: str | None) -> None:
            self.odd = odd

        async def rewards(self, source, batch):
            return batch["s_next"][:, 0] * (-1.0 if source == self.odd else 1.0) + 0.001 * len(source)

    def pick(similarity: float, odd: str | None) -> list[int]:
        c = cfg.override({"ppo.select_top": 2, "ppo.select_similarity": similarity})
        return [r.id for r in asyncio.run(ppo_select.top(archive, 0, c, data, Rewards(odd)))]

    assert pick(1.0, top[5].best_source) == [top[0].id, top[1].id]  # off: the top 2 by score
    assert pick(0.9, top[5].best_source) == [top[0].id, top[5].id]  # the best, then the best ranking differently
    assert pick(0.9, None) == [top[0].id, top[1].id]  # all rank alike: filled in offline order
    archive.close()


def test_dense_extras_follow_the_top_and_count_an_already_scored_dense_version(tmp_path) -> None:
    """The dense versions proposed in the last generation join PPO in the loop after the top K; one
    the search had already scored (persisted as a duplicate) counts as that earlier row; one that is
    already among the top is not trained twice."""
    from grace.search.ppo_select import dense_extras
    from grace.search.select import truncate

    archive = Archive(tmp_path / "a.sqlite")

    def add(pid: str, gen: int, slot: int, op: str, status: str, score: float) -> int:
        rid = archive.add_proposal(program_id=pid, round=0, generation=gen, slot=slot, island=0, operator=op,
                                   parents=[], proposer="offline", source=f"# {pid}", size=10)
        archive.set_result(rid, status=status, fitness=score, score=score)
        return rid

    for i, score in enumerate((0.9, 0.8, 0.7)):
        add(f"top{i}", 1, i, "mutate", "ok", score)
    early = add("flat", 1, 5, "simplify", "ok", 0.3)  # the dense version, found earlier by a simplify
    add("flat", 2, 0, "densify", "duplicate", 0.3)
    fresh = add("slope", 2, 1, "densify", "ok", 0.5)
    add("top1", 2, 2, "densify", "duplicate", 0.8)  # densifying gave a program already in the top
    cfg = EvolveConfig().override({"ppo.select_top": 3, "ppo.select_dense": 2, "ppo.select_heldout": 0})
    top = truncate(archive.programs(round=0, status="ok"), 3)
    assert [r.program_id for r in top] == ["top0", "top1", "top2"]
    assert [r.id for r in dense_extras(archive, 0, cfg, top)] == [fresh, early]
    assert [r.id for r in dense_extras(archive, 0, cfg.override({"ppo.select_dense": 1}), top)] == [fresh]
    assert dense_extras(archive, 0, cfg.override({"ppo.select_dense": 0}), top) == []
    # the held-out picks were densified too: one dense version more per pick
    assert len(dense_extras(archive, 0, cfg.override({"ppo.select_dense": 1, "ppo.select_heldout": 1}), top)) == 2
    archive.close()


def test_heldout_extras_are_better_generalisers_than_every_top_candidate() -> None:
    """`ppo.select_heldout`: programs whose held-out fitness beats every chosen one's, best first by
    parsimony-penalised held-out fitness, one row per program; none when nothing is held out."""
    from grace.search.ppo_select import heldout_extras

    def row(i: int, pid: str, fitness: float, heldout: float | None, size: int = 50) -> ProgramRow:
        return ProgramRow(id=i, program_id=pid, round=0, generation=0, slot=i, island=0, operator="mutate",
                          parents=[], proposer="offline", source="", fitted_source=None, status="ok",
                          fitness=fitness, heldout=heldout, score=fitness, size=size, metrics={}, worst=[],
                          error_kind=None, error=None, debug_output=None, negatives_version=0, meta={},
                          created=0.0, eval_seconds=None)

    top = [row(1, "a", 0.78, 0.25), row(2, "b", 0.77, 0.41)]
    rows = top + [row(3, "c", 0.45, 0.976), row(4, "d", 0.63, 0.970), row(5, "d", 0.60, 0.965),
                  row(6, "e", 0.52, 0.986, size=400), row(7, "f", 0.70, 0.30), row(8, "g", 0.70, None)]
    cfg = EvolveConfig()
    picked = heldout_extras(rows, cfg, top)
    # e has the best held-out fitness but 350 more AST nodes (parsimony 0.0005 each): c, then d
    assert [r.program_id for r in picked] == ["c", "d"] and picked[1].id == 4
    assert [r.program_id for r in heldout_extras(rows, cfg.override({"ppo.select_heldout": 3}), top)] == ["c", "d", "e"]
    assert heldout_extras(rows, cfg.override({"ppo.select_heldout": 0}), top) == []
    assert heldout_extras(rows, cfg, top + [row(9, "h", 0.8, 0.99)]) == []  # a top one generalises best
    assert heldout_extras([row(1, "a", 0.7, None), row(2, "b", 0.6, None)], cfg, []) == []


def test_policies_are_scored_on_how_episodes_end_and_over_the_horizon_where_the_demos_come_from_elsewhere() -> None:
    """Episode endings join the expert-likeness for a task (terminating CartPole: its experts never
    fall); a fixed-horizon variant whose demos came from the terminating env (acrobot_fixed)
    compares every expert state over the experts' horizon too, and its policies' episodes end
    where the wrapped env terminates (`grace.fitness.ppo._as_compared`)."""
    import numpy as np

    from grace.search.ppo_select import discriminator

    n = 12
    data = {"label": np.ones(n, int), "train": np.ones(n, int), "episode": np.repeat([0, 1], n // 2),
            "terminal": np.zeros(n, bool), "source": np.zeros(n, int), "source_names": np.array(["demos"]),
            "step": np.tile(np.arange(n // 2), 2),
            "s_next": np.random.default_rng(0).normal(size=(n, 4))}
    cfg = EvolveConfig(task="cartpole")
    assert discriminator(cfg, data, get_task("cartpole")).ending_rate == 0.0
    assert get_task("acrobot_fixed").demo_env is not None
    fixed = discriminator(cfg, data, get_task("acrobot_fixed"))
    assert fixed.ending_rate == 0.0 and fixed.mean_length == n // 2
    assert fixed.survival is not None and len(fixed.survival) == n // 2
    assert discriminator(cfg, data).ending_rate is None and discriminator(cfg, data).survival is None


def test_a_blind_choice_compares_the_candidates_again_with_the_demos_potential(monkeypatch) -> None:
    """When no candidate's policy reaches the imitation floor (terminating MountainCar: no policy
    reaches the flag unshaped), every candidate trains again with the demos' potential for it and is
    scored on that; a candidate without a potential drops out; unshaped likeness is kept on record.
    When one candidate imitates, nothing trains again."""
    import asyncio

    from grace.search import ppo_select
    from grace.types import PPOResult

    trained: list[list[str]] = []

    async def fake_train(task, cfg, sources, data, seed, seeds=None):
        trained.append(list(sources))
        return [PPOResult(true_return_mean=-130.0, irl_score=0.5, irl_per_seed=[0.4, 0.6], env_steps=10)
                for _ in sources], 1.0

    async def shaper(source: str) -> str | None:
        return None if source == "b" else source + "+potential"

    monkeypatch.setattr(ppo_select, "train_and_score", fake_train)
    cfg, task = EvolveConfig(task="mountaincar"), get_task("mountaincar")

    def scored(*likeness: list[float]) -> list[dict]:
        return [{"likeness_seeds": v, "offline_rank": i} for i, v in enumerate(likeness)]

    blind, sources = scored([0.0, 0.0], [0.01, 0.0], [0.0, 0.04]), ["a", "b", "c"]
    rec = asyncio.run(ppo_select._shaped_rerun(task, cfg, blind, sources, {}, 0, shaper, 0.9))  # floor 0.045
    assert trained == [["a+potential", "c+potential"]] and sources == ["a+potential", "b", "c+potential"]
    assert rec["shaped"] == 2 and abs(rec["floor"] - 0.045) < 1e-12 and rec["env_steps"] == 20 * cfg.ppo.seeds
    assert [s["likeness_seeds"] for s in blind] == [[0.4, 0.6], None, [0.4, 0.6]]
    assert [s["shaped"] for s in blind] == [True, False, True]
    assert blind[1]["likeness_seeds_unshaped"] == [0.01, 0.0]
    seeing, sources = scored([0.0, 0.0], [0.05, 0.06]), ["a", "c"]
    assert asyncio.run(ppo_select._shaped_rerun(task, cfg, seeing, sources, {}, 0, shaper, 0.9)) is None
    assert trained == [["a+potential", "c+potential"]] and sources == ["a", "c"]
