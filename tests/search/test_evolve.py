from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import grace
from grace.config import EvolveConfig
from grace.program import RewardProgram
from grace.search.archive import Archive
from tests.conftest import DEMOS, NO_PPO_SELECT, ROOT, run_cli

SMALL = dict(search={"generations": 2, "population": 4, "islands": 2}, data={"random_negative_episodes": 16},
             report=False)


def _sources(run_dir):
    db = sqlite3.connect(run_dir / "archive.sqlite")
    rows = db.execute("SELECT round, generation, slot, source, status, fitness FROM programs ORDER BY round, generation, slot").fetchall()
    db.close()
    return rows


def test_small_run_api(tmp_path):
    res = grace.evolve(EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(tmp_path / "r")).override(SMALL),
                       progress=False)
    assert res.best is not None and res.best_path is not None
    program = RewardProgram.from_file(res.best_path).validate(grace.get_task("cartpole").schema)
    prov = program.provenance
    assert prov["task"] == "cartpole" and "sha256" in prov["demos"] and res.best.program_id in prov["program"]
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    gens = archive.completed_generations()
    assert [(g["round"], g["generation"]) for g in gens] == [(0, 0), (0, 1), (0, 2)]
    assert len(archive.programs()) == 3 * 8
    assert all(p.negatives_version == 0 for p in archive.programs(status="ok"))
    # the written file re-scores to the archived fitness (PARAMS written back exactly)
    out = run_cli("eval", str(res.best_path), "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["fitness"] == pytest.approx(res.best.fitness, abs=1e-3)


def test_python_api_mirrors_cli(tmp_path):
    import grace.search.archive as archive_module  # the package stays importable as a package

    res = grace.evolve(task="mountaincar", demos=str(DEMOS / "mountaincar.npz"), out=str(tmp_path / "r"),
                       progress=False, **SMALL)
    assert res.best is not None and archive_module.Archive(tmp_path / "r" / "archive.sqlite").top(1)


def test_same_seed_same_archive(tmp_path):
    cfg = EvolveConfig(task="acrobot", demos=str(DEMOS / "acrobot.npz")).override(SMALL)
    grace.evolve(cfg.override(out=str(tmp_path / "a")), progress=False)
    grace.evolve(cfg.override(out=str(tmp_path / "b")), progress=False)
    a, b = _sources(tmp_path / "a"), _sources(tmp_path / "b")
    assert [r[:4] for r in a] == [r[:4] for r in b]
    assert [r[5] for r in a] == pytest.approx([r[5] for r in b], nan_ok=True)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    args = ["evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"), "--out", str(tmp_path / "r"),
            "--generations", "1", "--population", "2", "--islands", "1", "--quiet"]
    assert run_cli(*args).returncode == 0
    res = run_cli(*args)
    assert res.returncode == 2 and "already holds a run" in res.stderr
    assert run_cli(*args, "--overwrite").returncode == 0


def test_incompatible_archive_refused(tmp_path):
    run = tmp_path / "r"
    grace.evolve(EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), report=False).override(
        {"search.generations": 1, "search.population": 2, "search.islands": 1, "data.random_negative_episodes": 4}),
        progress=False)
    db = sqlite3.connect(run / "archive.sqlite")
    db.execute("UPDATE meta SET value='99' WHERE key='schema_version'")
    db.commit()
    db.close()
    res = run_cli("evolve", "--resume", str(run))
    assert res.returncode == 2
    assert res.stderr.strip().splitlines() == [f"error: {run / 'archive.sqlite'} was written by archive schema v99; this grace reads v1"]


def test_init_file_seeds_population(tmp_path):
    ref = ROOT / "grace/tasks/rewards/pendulum.py"
    res = grace.evolve(EvolveConfig(task="pendulum", demos=str(DEMOS / "pendulum.npz"), out=str(tmp_path / "r"),
                                    init=(str(ref),)).override(SMALL), progress=False)
    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    first = archive.slots(0, 0)[0]
    assert first.operator == "init-file" and first.program_id == RewardProgram.from_file(ref).program_id
    assert res.best.fitness >= first.fitness - 1e-9


def test_user_task_never_seen(tmp_path):
    task = ROOT / "examples/tasks/point_reach.toml"
    res = grace.evolve(EvolveConfig(task=str(task), demos=str(DEMOS / "point_reach.npz"), out=str(tmp_path / "r"),
                                    report=False).override(search={"generations": 3, "population": 6, "islands": 2}),
                       progress=False)
    assert res.best.fitness > 0.5
    assert res.best.metrics["auc_train"] > 0.9


def test_sigkill_then_resume_loses_nothing(tmp_path):
    run = tmp_path / "r"
    cmd = [sys.executable, "-m", "grace.cli", "evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"),
           "--out", str(run), "--generations", "6", "--population", "6", "--islands", "2", "--quiet", *NO_PPO_SELECT]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    accepted: list = []
    while time.time() < deadline:
        time.sleep(0.3)
        if (run / "archive.sqlite").exists():
            try:
                accepted = [r for r in _sources(run) if r[4] == "ok"]
            except sqlite3.OperationalError:
                continue
            if len(accepted) >= 20:
                break
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(accepted) >= 20, "the run did not get far enough to test the kill"
    before = {r[:3]: r for r in _sources(run) if r[4] == "ok"}
    assert len(before) >= len(accepted)
    res = run_cli("evolve", "--resume", str(run), "--quiet")
    assert res.returncode == 0, res.stderr
    after = {r[:3]: r for r in _sources(run)}
    for key, row in before.items():
        assert after[key][3] == row[3] and after[key][4] == "ok" and after[key][5] == pytest.approx(row[5])
    archive = Archive(run / "archive.sqlite", create=False)
    assert archive.last_completed() == (0, 6)
    assert (run / "best_reward.py").exists()


def test_resume_with_more_generations(tmp_path):
    run = tmp_path / "r"
    cfg = EvolveConfig(task="mountaincar", demos=str(DEMOS / "mountaincar.npz"), out=str(run)).override(SMALL)
    grace.evolve(cfg, progress=False)
    n_before = len(_sources(run))
    res = run_cli("evolve", "--resume", str(run), "--generations", "3", "--quiet")
    assert res.returncode == 0, res.stderr
    rows = _sources(run)
    assert len(rows) == n_before + 8 and max(r[1] for r in rows) == 3
