"""Kill + resume gives the same archive as an uninterrupted run (issue: deterministic resume).

Duplicate status and every selection input are decided in (round, generation, slot) order, not in
completion order, so neither a SIGKILL at any point nor the order in which sandbox workers finish
can change which programs the run keeps.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import DEMOS, NO_PPO_SELECT, ROOT, run_cli

ARGS = ["--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"), "--generations", "4",
        "--population", "4", "--islands", "2", "--quiet"]


def _rows(run: Path) -> list[tuple]:
    db = sqlite3.connect(run / "archive.sqlite")
    try:
        return db.execute("SELECT round, generation, slot, program_id, source, status, round(fitness, 9)"
                          " FROM programs ORDER BY round, generation, slot").fetchall()
    finally:
        db.close()


def _scored(run: Path) -> int:
    try:
        return sum(r[5] != "pending" for r in _rows(run))
    except sqlite3.OperationalError:
        return 0


def _run_and_kill(run: Path, after: int, resume: bool) -> None:
    """Start (or resume) the run, SIGKILL its whole process group once `after` programs are scored."""
    cmd = [sys.executable, "-m", "grace.cli", "evolve", *(["--resume", str(run), "--quiet"] if resume
                                                          else [*ARGS, *NO_PPO_SELECT, "--out", str(run)])]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        if (run / "archive.sqlite").exists() and _scored(run) >= after:
            break
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_kill_at_several_points_then_resume_equals_uninterrupted(tmp_path):
    whole = tmp_path / "whole"
    res = run_cli("evolve", *ARGS, "--out", str(whole))
    assert res.returncode == 0, res.stderr
    reference = _rows(whole)
    assert len(reference) == 5 * 8

    killed = tmp_path / "killed"
    _run_and_kill(killed, after=6, resume=False)  # inside generation 0
    n_first = _scored(killed)
    _run_and_kill(killed, after=n_first + 13, resume=True)  # a later generation
    assert _scored(killed) < len(reference), "the run finished before the second kill"
    res = run_cli("evolve", "--resume", str(killed), "--quiet")
    assert res.returncode == 0, res.stderr
    assert _rows(killed) == reference


# -- completion order -------------------------------------------------------------------------------
SAME = '''"""The same logic, proposed twice in one generation."""

PARAMS = {"w": 1.0}


def reward(s, a, s_next, p):
    return -p["w"] * xp.abs(s_next.pole_angle)
'''
OTHER = SAME.replace("pole_angle", "cart_position")


class _Proposer:
    """Proposes SAME in slots 0 and 1 of every generation and OTHER elsewhere."""

    name = "scripted"
    reask_duplicates = 0
    concurrency = None

    async def init(self, ctx, n, seed):
        from grace.proposers.base import Proposal

        return [Proposal(SAME if i < 2 else OTHER, "init") for i in range(n)]

    async def mutate(self, ctx, parent, seed):
        from grace.proposers.base import Proposal

        return Proposal(OTHER, "mutate")

    crossover = simplify = shaping = None

    async def label_goals(self, ctx, candidates, seed):
        return None

    async def label_policy(self, ctx, candidates, seed):
        return None


class _Fitness:
    """Scores every program 0.5 after a delay chosen per source and call: controls completion order."""

    name = "fake"

    def __init__(self, slow_first: bool) -> None:
        self.slow_first, self.calls = slow_first, 0

    def prepare(self, data, return_range=None):
        pass

    async def score(self, program, seed):
        import asyncio

        from grace.types import EvalResult

        self.calls += 1
        first_call = self.calls == 1
        await asyncio.sleep(0.3 if first_call == self.slow_first else 0.0)
        return EvalResult(fitness=0.5, heldout_fitness=0.5, params=dict(program.params))

    def describe(self, fitness, heldout, metrics, negatives_version):
        return f"{fitness} (fake)"

    def close(self):
        pass


class _Executor:
    """Nothing runs here: the fake fitness scores without it."""

    def put(self, key, value):
        pass

    async def call(self, fn, source, *args, timeout=None, **kwargs):
        raise AssertionError("the fake fitness needs no executor")

    async def rewards(self, source, batch):
        return None

    def close(self):
        pass


def _statuses(tmp_path, slow_first: bool) -> list[tuple[int, str]]:
    import asyncio

    from grace.config import EvolveConfig
    from grace.search.archive import Archive
    from grace.search.loop import Evolution
    from grace.tasks import get_task

    run = tmp_path / ("slow" if slow_first else "fast")
    run.mkdir()
    cfg = EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), report=False).override(
        {"search.generations": 0, "search.population": 2, "search.islands": 2,
         "data.random_negative_episodes": 4, "fit.params": False})
    archive = Archive(run / "archive.sqlite")
    evo = Evolution(cfg, run, archive, get_task("cartpole"), _Proposer(), _Executor(), _Fitness(slow_first))
    asyncio.run(evo.run())
    rows = archive.slots(0, 0)
    return [(slot, rows[slot].status) for slot in sorted(rows)]


def test_duplicate_status_does_not_depend_on_completion_order(tmp_path):
    """Slots 0 and 1 hold the same logic: slot 0 is scored and slot 1 is its duplicate, whichever
    sandbox evaluation finishes first."""
    slow, fast = _statuses(tmp_path, slow_first=True), _statuses(tmp_path, slow_first=False)
    assert slow == fast == [(0, "ok"), (1, "duplicate"), (2, "ok"), (3, "duplicate")]


def test_population_reloads_in_the_order_the_loop_keeps(tmp_path):
    """Parents are drawn by position in an island's member list: a resumed run must read the
    members back best first, ties by where they were proposed, whatever order the rows were
    stored in (a resumed run stores the rest of a generation after the rows of later slots)."""
    from grace.search.archive import Archive
    from grace.search.select import truncate

    archive = Archive(tmp_path / "archive.sqlite")
    scores = {3: 0.5, 1: 0.7, 0: 0.5, 2: 0.9}  # stored in slot order 3, 1, 0, 2: ids are not slot order
    rows = {}
    for slot, score in scores.items():
        rid = archive.add_proposal(program_id=f"p{slot}", round=0, generation=0, slot=slot, island=0,
                                   operator="init", parents=[], proposer="t", source=f"# {slot}")
        archive.set_result(rid, status="ok", fitness=score, score=score)
        rows[slot] = archive.program(rid)
    kept = truncate(list(rows.values()), 4)
    assert [r.slot for r in kept] == [2, 1, 0, 3]  # best first, the tie by slot, not by id
    archive.set_population(0, 0, {0: [rows[s].id for s in (3, 0, 1, 2)]})  # any stored order
    assert [r.slot for r in archive.population(0, 0)[0]] == [r.slot for r in kept]
    archive.close()
