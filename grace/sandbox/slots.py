"""Parent-side plumbing of the sandbox pool: worker slots, environment, reply decoding.

Replies from workers are decoded with an allow-listing unpickler (numpy arrays, plain data and
classes of grace modules only): a worker compromised below the restricted-compile layer still
cannot run code in the host through pickle. Large buffers arrive through a per-worker shared
memory block; spans are bounds-checked and copied out before unpickling.
"""

from __future__ import annotations

import io
import mmap
import os
import pickle
import shutil
import signal
import struct
import subprocess
import time
from multiprocessing.connection import Connection
from typing import Any

_SECRET_MARKERS = ("KEY", "TOKEN", "SECRET", "PASSWORD", "CREDENTIAL", "AUTH")
_PASSTHROUGH = {"numpy": (), "jax": ("JAX_", "XLA_", "CUDA_VISIBLE_DEVICES", "TF_CPP_MIN_LOG_LEVEL")}


_SAFE_GLOBALS = {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("builtins", "complex"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "slice"), ("builtins", "range"),
    ("copyreg", "_reconstructor"), ("builtins", "object"), ("collections", "OrderedDict"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickles worker replies: numpy arrays, plain data, and classes of grace modules."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS or module.startswith("numpy.dtypes") or (
                module.startswith("grace.") and not name.startswith("_")):
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"worker reply refers to {module}.{name}, which is not allowed")


def _safe_loads(data: bytes | memoryview, buffers: list[bytearray] | None = None) -> Any:
    return _SafeUnpickler(io.BytesIO(data), buffers=buffers).load()


def _decode(data: bytes, shm: mmap.mmap | None) -> Any:
    """Decode a call reply (see grace.sandbox.worker._encode); bounds-checked, copies first."""
    if data[:1] == b"P":
        return _safe_loads(memoryview(data)[1:])
    if data[:1] != b"B" or shm is None:
        raise ValueError("unknown reply format")
    (n,) = struct.unpack_from("<I", data, 1)
    spans = struct.unpack_from(f"<{2 * n}Q", data, 5)
    buffers = []
    for off, length in zip(spans[::2], spans[1::2], strict=True):
        if off + length > len(shm):
            raise ValueError("reply buffer out of bounds")
        buffers.append(bytearray(shm[off:off + length]))
    return _safe_loads(memoryview(data)[5 + 16 * n:], buffers)


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


class _Slot:
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


def _shutdown(slots: list[_Slot], root: str) -> None:
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
