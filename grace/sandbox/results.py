"""What sandboxed calls give back: `Outcome`, and the zero-copy path for large results.

A worker writes a scored batch into its shared-memory block as float64 arrays of the batch
length, back to back: the total first, then the components in order (`block_writer`). Its reply
carries only `(batch, names)`; the host computes every offset itself from that and the size of
its own mapping (`read_block`), so a compromised worker can at worst put wrong numbers in its
own block: it cannot make the host read outside the block, and the host maps the block
read-only, so nothing built on it can write anywhere.

`ResultLease` (from `SandboxPool.evaluate_lease`) hands such arrays to the caller without
copying them. Why a lease: the block is rewritten by the worker's next call, so the lease holds
the worker until it is released. On release, the lease checks (through a weak reference to the
buffer the arrays share) that no array built on the block is still alive anywhere. If one is,
the views would silently change on the next call; instead the worker is retired (killed, and
respawned with a fresh block on next use), so the leftover arrays keep their values for as long
as they live, and `release` raises `ResultLeakError`. Misuse is therefore loud, never silent.
"""

from __future__ import annotations

import gc
import math
import mmap
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from grace.sandbox.errors import SandboxError

ITEM = 8
"""Bytes per value in the block (float64)."""
MAX_COMPONENTS = 64
REDUCTIONS = ("sum", "mean")


@dataclass
class Outcome:
    """The result of one sandboxed call: `value` when ok, else a structured `error`."""

    ok: bool
    value: Any = None
    error: SandboxError | None = None
    seconds: float = 0.0

    def unwrap(self) -> Any:
        """The value, or raise the SandboxError."""
        if not self.ok:
            assert self.error is not None
            raise self.error
        return self.value


# ----------------------------------------------------------------------------- worker side

def block_writer(shm: mmap.mmap, batch: int) -> Callable[[int], np.ndarray]:
    """Worker side: `out(i)` is the float64 (batch,) destination of array i in the block."""
    def out(i: int) -> np.ndarray:
        if (i + 1) * batch * ITEM > len(shm):
            raise SandboxError("bad_return", f"output too large: {i + 1} arrays of {batch} "
                                             f"float64 do not fit the {len(shm)}-byte result block")
        return np.frombuffer(shm, np.float64, batch, i * batch * ITEM)

    return out


def reduce_sums(sums: list[float], names: list[str], batch: int, how: str
                ) -> tuple[float, dict[str, float]]:
    """Worker side: (total, {name: value}) from the per-array sums, for `how` in REDUCTIONS."""
    if how not in REDUCTIONS:
        raise ValueError(f"reduce must be one of {REDUCTIONS}, got {how!r}")
    if how == "mean" and batch == 0:
        raise ValueError("the mean of an empty batch is undefined")
    vals = [s / batch if how == "mean" else s for s in sums]
    for name, v in zip(["the total reward", *names], vals, strict=True):
        if not math.isfinite(v):
            raise SandboxError("bad_return", f"the {how} of {name} overflows ({v})")
    return vals[0], dict(zip(names, vals[1:], strict=True))


# ----------------------------------------------------------------------------- host side

def _check_names(names: Any) -> tuple[str, ...]:
    if type(names) is not tuple or len(names) > MAX_COMPONENTS:
        raise ValueError("component names must be a tuple of at most "
                         f"{MAX_COMPONENTS} names")
    for name in names:
        if type(name) is not str or not name or len(name) > 100:
            raise ValueError("component names must be short strings")
    if len(set(names)) != len(names):
        raise ValueError("duplicate component names")
    return names


def read_block(shm: mmap.mmap, header: Any, batch: int | None
               ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Host side: read-only views of a worker's results in its (read-only mapped) block.

    `header` is the worker's `(batch, names)`; `batch`, when the host knows it, is what the
    worker must report. Raises ValueError on any inconsistency. Returns the array that owns the
    views (the lease watches its buffer), the total and the components.
    """
    if type(header) is not tuple or len(header) != 2 or type(header[0]) is not int:
        raise ValueError("malformed result header")
    n, names = header[0], _check_names(header[1])
    if n < 0 or (batch is not None and n != batch):
        raise ValueError(f"result batch {n} does not match the data ({batch})")
    nbytes = (1 + len(names)) * n * ITEM
    if nbytes > len(shm):
        raise ValueError("result block out of bounds")
    owner = np.frombuffer(shm, np.uint8, nbytes)  # read-only: the host maps the block read-only
    if owner.flags.writeable:
        raise ValueError("the result block must be mapped read-only")
    arrays = [owner[i * n * ITEM:(i + 1) * n * ITEM].view(np.float64) for i in range(1 + len(names))]
    return owner, arrays[0], dict(zip(names, arrays[1:], strict=True))


def check_reduced(value: Any) -> tuple[float, dict[str, float]]:
    """Host side: a reduced result must be (finite float, {short name: finite float})."""
    if type(value) is not tuple or len(value) != 2 or type(value[1]) is not dict:
        raise ValueError("malformed reduced result")
    total, comps = value
    names = _check_names(tuple(comps))
    vals = [total, *comps.values()]
    if not all(type(v) is float and math.isfinite(v) for v in vals):
        raise ValueError("reduced results must be finite floats")
    return total, dict(zip(names, vals[1:], strict=True))


class ResultLeakError(RuntimeError):
    """An array built on a worker's shared block outlived the lease it came from."""


class ResultLease:
    """A scored batch as read-only views onto a worker's shared block; holds that worker.

    >>> with pool.evaluate_lease(source, "demo") as res:      # doctest: +SKIP
    ...     mean = float(res.total.mean())                     # views, no copy
    ...     keep = res.components["upright"].copy()            # copy what must outlive it

    `ok`, `error` and `seconds` are as in `Outcome`; `total`, `components` and `value` raise
    the program's SandboxError when not ok, and RuntimeError once released. Release it (the
    `with` block does) before the next call on the pool from this thread can need the worker.
    """

    def __init__(self, outcome: Outcome, owner: np.ndarray | None = None,
                 on_release: Callable[[bool], None] | None = None) -> None:
        self.ok, self.error, self.seconds = outcome.ok, outcome.error, outcome.seconds
        self._value: tuple[np.ndarray, dict[str, np.ndarray]] | None = outcome.value
        self._owner = owner
        self._buffer = None if owner is None else weakref.ref(owner.base)
        self._on_release = on_release
        self._released = False
        self._lock = threading.Lock()

    def _get(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if self._released:
            raise RuntimeError("this result lease was released; its arrays are gone")
        if not self.ok:
            assert self.error is not None
            raise self.error
        assert self._value is not None
        return self._value

    @property
    def total(self) -> np.ndarray:
        """The total reward per transition, float64 (B,), read-only."""
        return self._get()[0]

    @property
    def components(self) -> dict[str, np.ndarray]:
        """Each component, float64 (B,), read-only (a new dict on every access)."""
        return dict(self._get()[1])

    @property
    def value(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(total, components), like `Outcome.value` of `SandboxPool.evaluate`."""
        return self.total, self.components

    def unwrap(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        return self.value

    def copy(self) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Writable copies of (total, components), safe to keep after release."""
        total, comps = self._get()
        return total.copy(), {k: v.copy() for k, v in comps.items()}

    def release(self) -> None:
        """Give the worker back. Raises ResultLeakError if a view of the block is still alive
        (the worker is then retired, so that view keeps its values). Idempotent."""
        self._finish(loud=True)

    def _finish(self, loud: bool) -> None:
        with self._lock:
            if self._released:
                return
            self._released = True
            self._value = self._owner = None
            leaked = self._buffer is not None and self._buffer() is not None
            if leaked:
                gc.collect()  # views kept only by garbage cycles are not a leak
                leaked = self._buffer() is not None
            self._buffer = None
            if self._on_release is not None:
                self._on_release(leaked)
                self._on_release = None
        if leaked and loud:
            raise ResultLeakError(
                "an array from a result lease is still referenced after release; copy what you "
                "keep (lease.copy() or arr.copy()) inside the `with` block. The worker was "
                "retired so the array keeps its values.")

    def __enter__(self) -> ResultLease:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        # while an exception propagates, the failing frame still holds its locals: no raise then
        self._finish(loud=exc_type is None)

    def __del__(self) -> None:
        if not getattr(self, "_released", True) and self._on_release is not None:
            warnings.warn("a result lease was garbage-collected without release()",
                          ResourceWarning, stacklevel=1)
            try:
                self._finish(loud=False)
            except Exception:  # noqa: BLE001, S110 - never raise from a finalizer
                pass

    def __repr__(self) -> str:
        state = "released" if self._released else ("ok" if self.ok else f"error {self.error}")
        return f"ResultLease({state}, {self.seconds * 1e3:.2f} ms)"


__all__ = ["Outcome", "ResultLease", "ResultLeakError", "block_writer", "check_reduced",
           "read_block", "reduce_sums"]
