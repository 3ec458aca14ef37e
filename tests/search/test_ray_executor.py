"""The Ray executor (`sandbox.executor = "ray"`) on a local Ray instance.

Same seed -> same archive as the local executor, even with a Ray actor SIGKILLed mid-run; a call
whose actor dies mid-evaluation is sent again and answers as the local pool does. One Ray instance
serves the module (it starts in ~5-10 s); the tests skip, saying why, when `ray` is not installed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import threading
import time
from importlib.util import find_spec
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEMOS, ROOT, run_cli

needs_ray = pytest.mark.skipif(find_spec("ray") is None,
                               reason="ray is not installed (pip install 'grace[ray]')")

SIZES = {"search": {"generations": 2, "population": 4, "islands": 2}, "fit": {"params": False}}

SLOW = '''"""Slow on purpose: long enough to be killed mid-evaluation."""


def reward(s, a, s_next, p):
    total = xp.zeros_like(s_next.pole_angle)
    for i in range(8000):
        total = total + xp.tanh(s_next.pole_angle * (i + 1)) * 1e-3
    return total + SHIFT
'''


@pytest.fixture(scope="module")
def ray_instance():
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, logging_level="WARNING",
                 runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    yield ray
    ray.shutdown()


def _rows(run: Path) -> list[tuple]:
    db = sqlite3.connect(run / "archive.sqlite")
    try:
        return db.execute("SELECT round, generation, slot, program_id, source, status, round(fitness, 9),"
                          " fitted_source FROM programs ORDER BY round, generation, slot").fetchall()
    finally:
        db.close()


def _scored(run: Path) -> int:
    try:
        return sum(r[5] not in ("pending",) for r in _rows(run))
    except sqlite3.OperationalError:
        return 0


@needs_ray
def test_same_archive_with_local_and_ray_even_when_an_actor_is_killed(tmp_path, monkeypatch, ray_instance):
    import grace.search.ray_executor as rx
    from grace import evolve

    local = evolve(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(tmp_path / "local"),
                   seed=3, progress=False, report=False, **SIZES)
    made: list[rx.RayExecutor] = []
    real = rx.make_ray_executor
    monkeypatch.setattr(rx, "make_ray_executor", lambda task, sb, *rest: made.append(real(task, sb, *rest)) or made[-1])
    killed: dict[str, int] = {}
    run = tmp_path / "ray"

    def kill_one() -> None:  # SIGKILL actor 0's process once the run is under way
        deadline = time.time() + 300
        while time.time() < deadline and not (made and _scored(run) >= 6):
            time.sleep(0.05)
        if made:
            pid = made[0].pids[0]
            killed["pid"], killed["scored"] = pid, _scored(run)
            os.kill(pid, signal.SIGKILL)

    killer = threading.Thread(target=kill_one, daemon=True)
    killer.start()
    remote = evolve(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), seed=3, progress=False,
                    report=False, sandbox={"executor": "ray", "workers": 1, "ray_actors": 2}, **SIZES)
    killer.join(timeout=60)
    reference = _rows(tmp_path / "local")
    assert len(reference) == 3 * 8
    assert "pid" in killed and killed["scored"] < len(reference), "the actor was not killed mid-run"
    assert _rows(run) == reference
    assert remote.stats.errors == local.stats.errors and remote.best.program_id == local.best.program_id


@needs_ray
def test_call_survives_its_actor_being_killed_mid_evaluation(ray_instance):
    from grace.search.executor import LocalExecutor
    from grace.search.ray_executor import RayExecutor
    from grace.tasks import get_task

    task = get_task("cartpole")
    x = np.random.default_rng(0).normal(size=(20000, 4)).astype(np.float32)
    data = {"s": x, "a": np.zeros(len(x), np.int64), "s_next": x[::-1].copy()}
    sources = [SLOW.replace("SHIFT", str(float(k))) for k in range(4)]

    async def run_all(ex, kill: RayExecutor | None = None, pause: float = 0.0) -> list:
        ex.put("demo", data)
        calls = [asyncio.ensure_future(ex.call("grace.sandbox.worker:evaluate_on", src, "demo", None, timeout=120))
                 for src in sources]
        if kill is not None:
            await asyncio.sleep(pause)  # every call is on an actor (two each), the first ones running
            assert not any(c.done() for c in calls), "the evaluations finished before the kill"
            os.kill(kill.actor_pids()[0], signal.SIGKILL)
        return await asyncio.gather(*calls)

    local = LocalExecutor(task, workers=2, timeout=120)
    try:
        expected = asyncio.run(run_all(local))
    finally:
        local.close()
    assert all(o.ok for o in expected), [str(o.error) for o in expected if not o.ok]
    pause = 0.4 * min(o.seconds for o in expected)  # the kill lands while actor 0 evaluates
    ex = RayExecutor(task, workers=1, timeout=120, actors=2)
    try:
        before = ex.actor_pids()
        outs = asyncio.run(run_all(ex, kill=ex, pause=pause))
        after = ex.actor_pids()
    finally:
        ex.close()
    assert all(o.ok for o in outs), [str(o.error) for o in outs if not o.ok]
    for got, want in zip(outs, expected, strict=True):
        np.testing.assert_array_equal(got.value[0], want.value[0])
    assert ex.retries >= 1
    assert after[0] != before[0] and after[1] == before[1]  # Ray restarted the killed actor only


def test_bad_executor_and_missing_ray_are_one_line_errors(tmp_path, monkeypatch):
    res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"), "--out",
                  str(tmp_path / "r"), "--executor", "slurm", "--quiet")
    assert res.returncode == 2
    assert res.stderr.strip() == "error: sandbox.executor must be local or ray, not 'slurm'"

    from grace.config import ConfigError
    from grace.search.ray_executor import import_ray

    monkeypatch.setitem(sys.modules, "ray", None)  # as if ray were not installed
    with pytest.raises(ConfigError, match=r"sandbox.executor = ray needs Ray: pip install 'grace\[ray\]'"):
        import_ray()


def test_ppo_fitness_spreads_its_batch_over_the_actors_in_order(monkeypatch):
    """PPO fitness hands a batch to an executor's `train_ppo`; the Ray executor splits it into
    contiguous shares, one per actor, and returns the results in submission order (no JAX here:
    the actors' PPO is faked; PPO itself is tested in tests/fitness)."""
    from grace.config import EvolveConfig, FitSettings, PPOConfig
    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.fitness.base import make_fitness
    from grace.program import RewardProgram
    from grace.search.executor import LocalExecutor
    from grace.search.ray_executor import RayExecutor
    from grace.tasks import get_task
    from grace.types import PPOResult

    shares: list[tuple[int, tuple[str, ...]]] = []

    class Spread(LocalExecutor):  # the local pool scores offline; `train_ppo` is the Ray executor's
        train_ppo = RayExecutor.train_ppo

        async def _on_actor(self, method, task, job, timeout):
            assert method == "train_ppo"
            shares.append((len(shares), job.sources))
            return [PPOResult(true_return_mean=1.0, irl_score=float(src.split('"""')[1].count("Q")), run_s=0.5) for src in job.sources]

    task = get_task("cartpole")
    data = build_offline_data(task, load_demos(DEMOS / "cartpole.npz", task),
                              [("random", random_negatives(task, 16, 0))], seed=0)
    ex = Spread(task, workers=2)
    ex.actors = ["a0", "a1"]
    base = RewardProgram.from_file(ROOT / "grace/tasks/rewards/cartpole.py")
    progs = [RewardProgram(base.source.replace('"""', '"""' + "Q" * k + " ", 1)) for k in range(3)]
    try:
        ppo = make_fitness("ppo", task, ex, EvolveConfig(fit=FitSettings(params=False), ppo=PPOConfig(steps=1000, seeds=1)))
        ppo.window = 5.0
        ppo.prepare(data)

        async def go():
            return await asyncio.gather(*(ppo.score(p, 0) for p in progs))

        res = asyncio.run(go())
    finally:
        ex.close()
    assert ppo.batches == [3]
    assert [len(s) for _, s in shares] == [2, 1]  # contiguous shares over the 2 actors
    assert all(r.ok for r in res), [r.error for r in res]
    assert [r.fitness for r in res] == [0.0, 1.0, 2.0]  # each candidate gets its own result back
