"""Workers die with their host: SIGKILL the host process, its workers are gone within seconds
(numpy and jax profiles, idle and busy)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import ROOT

HOST = r"""
import sys, threading, time
sys.path.insert(0, {root!r})
from grace.sandbox.pool import Limits, SandboxPool
from grace.tasks.spec import Field, ObsSchema

profile, busy = sys.argv[1], sys.argv[2] == "busy"
limits = Limits.for_profile(profile, timeout_s=300.0, startup_s=240.0)
pool = SandboxPool(ObsSchema((Field("x"),)), n_workers=2, limits=limits, profile=profile)
if busy:  # one worker runs a program that never returns
    import numpy as np
    pool.put("d", {{"s": np.zeros((4, 1)), "a": np.zeros(4), "s_next": np.zeros((4, 1))}})
    spin = "def reward(s, a, s_next, p):\n    while True:\n        pass\n"
    threading.Thread(target=pool.evaluate, args=(spin, "d"), daemon=True).start()
    time.sleep(1.0)
print(" ".join(map(str, pool.worker_pids)), flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead
    except FileNotFoundError:
        return False


def _kill_host_then_no_orphans(host: subprocess.Popen, workers: list[int]) -> None:
    """SIGKILL the host alone (not its process group) and assert its workers are gone within 5 s."""
    os.kill(host.pid, signal.SIGKILL)
    host.wait(10)
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    assert not any(_alive(p) for p in workers), f"orphaned workers: {[p for p in workers if _alive(p)]}"


@pytest.mark.parametrize("busy", ["idle", "busy"])
@pytest.mark.parametrize("profile", ["numpy", "jax"])
def test_workers_die_when_the_host_is_killed(profile, busy, tmp_path):
    if profile == "jax":
        pytest.importorskip("jax")
    host = subprocess.Popen([sys.executable, "-c", HOST.format(root=str(ROOT)), profile, busy],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    try:
        line = host.stdout.readline()
        pids = [int(p) for p in line.split()]
        assert len(pids) == 2, host.stderr.read() if host.poll() is not None else line
        assert all(_alive(p) for p in pids)
        _kill_host_then_no_orphans(host, pids)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/children") as f:
                out += [int(c) for c in f.read().split()]
    except FileNotFoundError:
        pass
    return out


@pytest.mark.skipif(not os.path.exists("/proc/self/task"), reason="needs Linux /proc")
def test_no_orphan_after_the_host_of_grace_train_is_killed(tmp_path):
    """`grace train` trains in a jax-profile worker: SIGKILL the `grace train` process mid-run and
    the worker (which would otherwise train for up to its CPU limit) is gone within seconds."""
    pytest.importorskip("jax")
    host = subprocess.Popen([sys.executable, "-m", "grace.cli", "train", str(ROOT / "grace/tasks/rewards/cartpole.py"),
                             "--task", "cartpole_fixed", "--steps", "2000000", "--seeds", "2", "--out", str(tmp_path / "t")],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120.0
        workers: list[int] = []
        while time.monotonic() < deadline and host.poll() is None and not workers:
            time.sleep(0.2)
            workers = _children(host.pid)
        assert workers, "grace train never started its worker"
        time.sleep(3.0)  # let it get busy (compiling / training)
        workers = [p for p in _children(host.pid) if _alive(p)] or workers
        _kill_host_then_no_orphans(host, workers)
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()
