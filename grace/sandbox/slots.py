"""Parent-side plumbing of the sandbox pool: worker slots, their environment, shutdown and
housekeeping (stale temp dirs, resident memory). The wire format is in grace.sandbox.wire."""

from __future__ import annotations

import mmap
import os
import pickle
import shutil
import signal
import subprocess
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")
_PASSTHROUGH = {"numpy": (), "jax": ("JAX_", "XLA_", "CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL")}


def clean_env(workdir: str, profile: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a worker: a minimal set, never anything that looks like a secret."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": workdir,
        "TMPDIR": workdir,
        "LANG": "C.UTF-8",
        "OPENBLAS_NUM_THREADS": "1",
        "OMP_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        # keep freed batch-sized arrays in the heap: no mmap/munmap page faults per call
        "MALLOC_MMAP_THRESHOLD_": str(32 << 20),
        "MALLOC_TRIM_THRESHOLD_": str(128 << 20),
    }
    for key, value in os.environ.items():
        if key.startswith(_PASSTHROUGH.get(profile, ())) and key not in env:
            env[key] = value
    env.update(extra or {})
    return {k: v for k, v in env.items()
            if not any(m in k.upper() for m in _SECRET_MARKERS)}


class Slot:
    """One worker process and its pipes."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.send: Connection | None = None
        self.recv: Connection | None = None
        self.workdir = ""
        self.kill_reason: str | None = None
        self.dead = True
        self.uid = -1
        self.shm: mmap.mmap | None = None
        self.preloaded: frozenset[str] = frozenset()

    def kill(self, reason: str | None = None) -> None:
        if reason and self.kill_reason is None:
            self.kill_reason = reason
        proc = self.proc
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.kill()
            except ProcessLookupError:
                pass

    def reap(self) -> int | None:
        """Kill, wait and close everything; returns the exit code."""
        self.kill()
        rc = None
        if self.proc is not None:
            try:
                rc = self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = None
        for conn in (self.send, self.recv):
            if conn is not None:
                try:
                    conn.close()
                except OSError:
                    pass
        self.send = self.recv = None
        if self.shm is not None:
            self.shm.close()
            self.shm = None
        self.dead = True
        return rc


def shutdown(slots: list[Slot], root: str) -> None:
    for slot in slots:
        if slot.proc is not None and slot.proc.poll() is None and slot.send is not None:
            try:
                slot.send.send_bytes(pickle.dumps(("exit",)))
            except OSError:
                pass
    deadline = time.monotonic() + 1.0
    for slot in slots:
        if slot.proc is not None:
            try:
                slot.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        slot.reap()
    shutil.rmtree(root, ignore_errors=True)


def remove_stale_roots() -> None:
    """Remove pool dirs left by hosts that were killed (SIGKILL skips the cleanup)."""
    tmp = Path(tempfile.gettempdir())
    for path in tmp.glob("grace-sandbox-*-*"):
        pid = path.name.split("-")[2]
        if not pid.isdigit() or path.stat().st_uid != os.geteuid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            continue


def rss_mb(pid: int) -> float:
    """Resident memory of a process in MiB (0.0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        pass
    try:
        import psutil  # type: ignore[import-not-found]

        return float(psutil.Process(pid).memory_info().rss / 2**20)
    except Exception:  # noqa: BLE001 - no psutil, or the process is gone
        return 0.0
