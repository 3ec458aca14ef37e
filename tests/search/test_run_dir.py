"""Run directory safety: one writer at a time, read-only runs stay readable, a full disk or a
read-only medium ends with one line and exit 2 and loses nothing."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

import grace
from grace.config import EvolveConfig
from grace.search.archive import Archive, ArchiveError
from tests.conftest import DEMOS, run_cli

SMALL = {"search.generations": 1, "search.population": 2, "search.islands": 1,
         "data.random_negative_episodes": 8}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("run") / "r"
    grace.evolve(EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run),
                              report=False).override(SMALL), progress=False)
    return run


def _one_error_line(res: subprocess.CompletedProcess) -> str:
    assert res.returncode == 2, (res.stdout, res.stderr)
    assert "Traceback" not in res.stderr + res.stdout
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_second_writer_is_refused_with_the_holder_named(finished_run):
    holder = Archive(finished_run / "archive.sqlite")  # a live run holds the lock
    try:
        with pytest.raises(ArchiveError, match=f"in use by grace pid {os.getpid()}"):
            Archive(finished_run / "archive.sqlite")
        line = _one_error_line(run_cli("evolve", "--resume", str(finished_run), "--quiet"))
        assert "in use by grace pid" in line
        assert run_cli("show", str(finished_run)).returncode == 0  # readers never wait for the lock
    finally:
        holder.close()
    Archive(finished_run / "archive.sqlite").close()  # released on close


def test_read_only_run_directory_is_readable(finished_run, tmp_path):
    ro = tmp_path / "ro"
    shutil.copytree(finished_run, ro)
    for p in [ro, *ro.rglob("*")]:
        p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    try:
        if os.geteuid() == 0:  # root writes anyway: check the read-only opening directly
            archive = Archive(ro / "archive.sqlite", create=False)
            assert archive.readonly and archive.top(1)
            archive.close()
        res = run_cli("show", str(ro))
        assert res.returncode == 0, res.stderr
        res = run_cli("eval", str(ro / "best_reward.py"), "--run", str(ro), "--json")
        assert res.returncode == 0, res.stderr
        res = run_cli("report", str(ro), "-o", str(tmp_path / "report.html"))
        assert res.returncode == 0, res.stderr
    finally:
        for p in [ro, *ro.rglob("*")]:
            p.chmod(p.stat().st_mode | stat.S_IWUSR)


def _small_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                             capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return res.returncode == 0


def test_disk_full_is_one_line_and_resumable(tmp_path):
    mnt = tmp_path / "small"
    if not _small_tmpfs(mnt, "600k"):
        pytest.skip("cannot mount a small tmpfs here (needs root and mount rights)")
    try:
        run = mnt / "r"
        res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"), "--out", str(run),
                      "--generations", "3", "--population", "8", "--islands", "2", "--quiet")
        line = _one_error_line(res)
        assert "cannot write" in line and ("No space left" in line or "disk is full" in line)
        accepted = Archive(run / "archive.sqlite", create=False)
        n_ok = len(accepted.programs(status="ok"))
        accepted.close()
        big = tmp_path / "big"
        shutil.copytree(run, big)
    finally:
        subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)
    res = run_cli("evolve", "--resume", str(big), "--quiet")
    assert res.returncode == 0, res.stderr
    resumed = Archive(big / "archive.sqlite", create=False)
    assert len(resumed.programs(status="ok")) >= n_ok and resumed.last_completed() == (0, 3)
