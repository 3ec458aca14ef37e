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
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path

from grace.sandbox.errors import SandboxError
from grace.sandbox.policy import Limits
from grace.sandbox.wire import EXIT_MEMORY

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

    def log_tail(self, root: str, n: int = 1500) -> str:
        """The end of this worker's stderr log (in the pool's dir `root`)."""
        try:
            data = Path(root, f"w{self.index}.log").read_bytes()[-n:]
            return data.decode("utf-8", "replace").strip() or "(no output)"
        except OSError:
            return "(no log)"

    def death_error(self, limits: Limits, root: str) -> SandboxError:
        """The worker died mid-call: reap it and say why."""
        reason = self.kill_reason
        rc = self.reap()
        if reason == "memory" or rc == EXIT_MEMORY:
            return SandboxError("memory", f"the worker exceeded its memory cap "
                                          f"({limits.rss_watchdog_mb} MiB resident) and was killed")
        if rc == -signal.SIGXCPU:
            return SandboxError("timeout", f"CPU time limit exceeded ({limits.cpu_s} s)")
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            hint = " (possibly out of memory)" if rc == -signal.SIGKILL else ""
            return SandboxError("crash", f"the worker was killed by {name}{hint}: "
                                         f"{self.log_tail(root, 300)}")
        return SandboxError("crash", f"the worker exited (code {rc}): {self.log_tail(root, 300)}")

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
            try:
                self.shm.close()
            except BufferError:  # a result lease still has views on it: unmapped when they go
                pass
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


def watch_rss(slots: list[Slot], cap_mb: int, stopped: Callable[[], bool]) -> None:
    """The jax profile's memory watchdog (a host thread): kill a worker over `cap_mb` resident."""
    while not stopped():
        for slot in slots:
            proc = slot.proc
            if proc is not None and not slot.dead and proc.poll() is None and rss_mb(proc.pid) > cap_mb:
                slot.kill("memory")
        time.sleep(0.05)


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
