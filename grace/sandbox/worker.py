"""The worker side of the sandbox pool (runs inside each worker process).

`worker_main` is the entry point of a worker: it reads its init message (schema, limits,
backend), imports the backend, starts its watchdog (the worker ends itself, and everything it
started, as soon as its parent dies or, for the jax profile, when its own resident memory
exceeds the cap), applies its rlimits, then serves requests from the parent:
`put`/`drop` resident data and `call` a trusted function on a restricted-compiled program.
Every failure is turned into a structured error tuple; nothing the program does can make the
worker reply with anything but a pickle of plain data (or die, which the parent handles).
"""

from __future__ import annotations

import importlib
import mmap
import os
import pickle
import resource
import select
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from grace.sandbox.errors import SandboxError
from grace.sandbox.policy import Limits
from grace.sandbox.slots import rss_mb
from grace.sandbox.wire import EXIT_MEMORY, encode_reply
from grace.tasks.spec import ObsSchema


@dataclass
class WorkerContext:
    """What trusted functions get inside a worker: resident data, the schema, the limits."""

    data: dict[str, Any]
    schema: ObsSchema
    backend: str
    limits: Limits
    workdir: str
    extra: dict[str, Any] = field(default_factory=dict)
    shm: mmap.mmap | None = None
    """The shared result block (None where the platform has no memfd_create)."""


def _freeze(value: Any) -> Any:
    """Make resident arrays read-only so programs cannot alter data other programs see."""
    import numpy as np

    if isinstance(value, np.ndarray):
        value.flags.writeable = False
    elif isinstance(value, dict):
        for v in value.values():
            _freeze(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _freeze(v)
    return value


def _set_limits(limits: Limits) -> int:
    """Apply rlimits to this (worker) process; returns the hard CPU budget in seconds."""
    def setr(which: int, soft: int, hard: int | None = None) -> None:
        try:
            resource.setrlimit(which, (soft, soft if hard is None else hard))
        except (ValueError, OSError):
            pass

    mib = 1024 * 1024
    if limits.memory_mb:
        setr(resource.RLIMIT_AS, limits.memory_mb * mib)
    setr(resource.RLIMIT_FSIZE, limits.file_size_mb * mib)
    setr(resource.RLIMIT_NOFILE, limits.open_files)
    setr(resource.RLIMIT_CORE, 0)
    if os.geteuid() != 0:
        setr(resource.RLIMIT_NPROC, limits.processes)
    budget = max(limits.cpu_s * 200, 3600)
    setr(resource.RLIMIT_CPU, limits.cpu_s, budget)
    return budget


def _drop_privileges(uid: int, preload: tuple[str, ...]) -> None:
    """Become `uid` (nobody) for good, after importing what the worker will need.

    The interpreter may live where `nobody` cannot read (e.g. /root/.pyenv), so imports happen
    first. Afterwards the worker cannot write outside its temp dir (owned by `uid`), its
    /proc/self/environ is unreadable (non-dumpable) and RLIMIT_NPROC applies.
    """
    for name in ("grace.sandbox.worker", "json", "math", "random", "statistics", "unicodedata", "ctypes", *preload):
        importlib.import_module(name)
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def _cpu_used() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _arm_cpu(limits: Limits, budget: int) -> None:
    soft = min(int(_cpu_used()) + limits.cpu_s + 1, budget)
    try:
        resource.setrlimit(resource.RLIMIT_CPU, (soft, budget))
    except (ValueError, OSError):
        pass


def _resolve(path: str) -> Any:
    module, _, name = path.partition(":")
    if not module or not name:
        raise ValueError(f"fn must be 'module:function', got {path!r}")
    return getattr(importlib.import_module(module), name)


def _watchdog(parent: int, inbox_fd: int, rss_cap_mb: int) -> None:
    """End this worker (its whole process group) when the parent dies: the parent's end of the
    request pipe hangs up, or this process is re-parented. With `rss_cap_mb`, also end it (exit
    code EXIT_MEMORY) when its resident memory exceeds the cap, even with no parent watching."""
    poller = select.poll()
    poller.register(inbox_fd, 0)  # POLLHUP/POLLERR are always reported; never consume data
    period = 0.1 if rss_cap_mb else 0.5
    while True:
        hung_up = any(ev & (select.POLLHUP | select.POLLERR | select.POLLNVAL) for _, ev in poller.poll(period * 1000))
        if hung_up or os.getppid() != parent:
            try:
                os.killpg(os.getpid(), signal.SIGKILL)
            finally:
                os._exit(1)
        if rss_cap_mb and rss_mb(os.getpid()) > rss_cap_mb:
            sys.stderr.write(f"worker resident memory over {rss_cap_mb} MiB: stopping\n")
            sys.stderr.flush()
            os._exit(EXIT_MEMORY)


def _set_parent_death_signal(parent: int) -> None:
    """Linux: SIGKILL this worker when its parent dies, even while a job holds the GIL (the
    watchdog thread covers other platforms and workers launched from short-lived threads)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
    except (ImportError, OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def worker_main() -> None:
    """Entry point of a worker process (argv: read fd, write fd)."""
    rfd, wfd, shm_fd = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    shm = None
    if shm_fd >= 0:  # shared memory for large results (the pipe then carries a small header)
        shm = mmap.mmap(shm_fd, 0)
        os.close(shm_fd)
    parent = os.getppid()
    inbox, outbox = Connection(rfd, writable=False), Connection(wfd, readable=False)
    init = pickle.loads(inbox.recv_bytes())
    limits: Limits = init["limits"]
    backend: str = init["backend"]
    os.umask(0o077)
    threading.Thread(target=_watchdog, args=(parent, rfd, int(limits.rss_watchdog_mb)), daemon=True,
                     name="grace-worker-watchdog").start()
    import unicodedata  # noqa: F401 - the parser needs it for non-ASCII identifiers

    import numpy as np

    from grace.sandbox.compile import compile_reward, error_from_exception
    from grace.sandbox.xp import get_xp

    get_xp(backend)  # import (and for jax, initialise) the backend before the limits
    if backend == "jax":
        import jax.numpy as jnp

        jnp.zeros(1).block_until_ready()
    if init.get("drop_uid") is not None:
        _drop_privileges(int(init["drop_uid"]), init.get("preload", ()))
    if init.get("pdeathsig"):
        _set_parent_death_signal(parent)
    budget = _set_limits(limits)
    ctx = WorkerContext({}, init["schema"], backend, limits, os.getcwd(), shm=shm)
    fns: dict[str, Any] = {}
    cap = limits.output_mb * 1024 * 1024
    outbox.send_bytes(pickle.dumps(("ready", os.getpid(), os.geteuid())))
    while True:
        try:
            msg = pickle.loads(inbox.recv_bytes())
        except EOFError:
            return
        op = msg[0]
        if op == "exit":
            return
        if op == "put":
            ctx.data[msg[1]] = _freeze(msg[2])
            outbox.send_bytes(pickle.dumps(("ok", None, 0.0)))
            continue
        if op == "drop":
            ctx.data.pop(msg[1], None)
            outbox.send_bytes(pickle.dumps(("ok", None, 0.0)))
            continue
        _, fn, source, args, kwargs = msg
        t0 = time.perf_counter()
        _arm_cpu(limits, budget)
        try:
            if fn not in fns:
                fns[fn] = _resolve(fn)
            compiled = None
            if source is not None:
                compiled = compile_reward(source, ctx.schema, backend, limits.debug_chars)
            with np.errstate(all="ignore"):
                value = fns[fn](ctx, compiled, *args, **kwargs)
            reply = encode_reply(("ok", value, time.perf_counter() - t0), shm)
            if len(reply) > cap:
                reply = b"P" + pickle.dumps(("err", ("bad_return", f"output too large: "
                                             f"{len(reply)} bytes > {cap} bytes", None), 0.0))
        except BaseException as e:  # noqa: BLE001 - everything becomes a structured error
            if isinstance(e, (SystemExit, KeyboardInterrupt)):
                err = SandboxError("runtime", f"{type(e).__name__} raised")
            else:
                err = error_from_exception(e)
            e = None  # noqa: F841 - drop the traceback (and the program's frames)
            reply = b"P" + pickle.dumps(("err", err.to_tuple(), time.perf_counter() - t0))
        outbox.send_bytes(reply)
        if _cpu_used() > budget / 2:
            return  # exit cleanly; the parent respawns a fresh worker with a full CPU budget


def _scored(ctx: WorkerContext, compiled: Any, data_key: str,
            params: dict[str, float] | None) -> tuple[Any, Any, int]:
    """Run the program on resident data: its unchecked (total, components) and the batch size."""
    import numpy as np

    d = ctx.data[data_key]
    total, comps = compiled.raw_call(d["s"], d["a"], d["s_next"], params)
    if ctx.backend != "numpy":
        total = np.asarray(total)
        comps = {k: np.asarray(v) for k, v in comps.items()} if type(comps) is dict else comps
    return total, comps, int(np.shape(d["s_next"])[0])


def evaluate_on(ctx: WorkerContext, compiled: Any, data_key: str,
                params: dict[str, float] | None = None) -> Any:
    """Trusted worker function: score resident data {"s", "a", "s_next"} -> (total, comps)."""
    from grace.sandbox.compile import check_result

    return check_result(*_scored(ctx, compiled, data_key, params))


def evaluate_into(ctx: WorkerContext, compiled: Any, data_key: str,
                  params: dict[str, float] | None = None) -> tuple[int, tuple[str, ...]]:
    """Trusted worker function: score resident data and write the checked float64 total and
    components straight into the shared block (converted and checked in that one pass; layout
    in grace.sandbox.results). Only (batch, component names) goes through the pipe."""
    from grace.sandbox.compile import check_result
    from grace.sandbox.results import block_writer

    if ctx.shm is None:
        raise RuntimeError("this worker has no shared result block")
    total, comps, batch = _scored(ctx, compiled, data_key, params)
    _, out = check_result(total, comps, batch, out=block_writer(ctx.shm, batch))
    return batch, tuple(out)


def evaluate_reduced(ctx: WorkerContext, compiled: Any, data_key: str,
                     params: dict[str, float] | None = None, how: str = "sum"
                     ) -> tuple[float, dict[str, float]]:
    """Trusted worker function: the sum or mean of the checked total and of each component
    (the sums come from the finiteness check itself, so reducing costs nothing extra)."""
    from grace.sandbox.compile import check_result
    from grace.sandbox.results import reduce_sums

    total, comps, batch = _scored(ctx, compiled, data_key, params)
    sums: list[float] = []
    _, out = check_result(total, comps, batch, sums=sums)
    return reduce_sums(sums, list(out), batch, how)


def debug_on(ctx: WorkerContext, compiled: Any, data_key: str,
             params: dict[str, float] | None = None) -> str | None:
    """Trusted worker function: the program's debug() output on resident data (capped)."""
    d = ctx.data[data_key]
    return compiled.debug(d["s"], d["a"], d["s_next"], params)
