"""Process isolation for reward programs: a pool of killable, resource-limited workers.

Each worker is a fresh Python interpreter started with `subprocess` (exec, never a fork of the
host, so nothing of the host's memory, e.g. API keys, is inherited): its environment is built
from scratch (PATH, HOME=its temp dir, LANG, thread-count and malloc variables; nothing that
looks like a key or token), its cwd is its own temp dir and it runs in its own session (a kill
reaches everything it started). When the host runs as root, the worker imports what it needs
and then drops to the unprivileged user `nobody` for good: it can then write only where
`nobody` can (its temp dir, and world-writable dirs such as /tmp), its /proc/self is no longer
readable, and RLIMIT_NPROC applies. It sets its rlimits before reading any program: RLIMIT_AS
(numpy profile), RLIMIT_CPU (re-armed per call), RLIMIT_FSIZE, RLIMIT_NOFILE, RLIMIT_NPROC,
RLIMIT_CORE=0.

The parent talks to a worker over two pipes (length-prefixed pickles, stdlib
`multiprocessing.connection`); large results come back through a per-worker shared-memory
block, which the host maps read-only (`evaluate_lease` hands them to the caller without a copy,
`evaluate(reduce="sum")` sends only sums: grace.sandbox.results). A call past its timeout gets
the worker's process group SIGKILLed; it is respawned (resident data re-sent) on next use. Replies
are unpickled by an allow-list (grace.sandbox.wire). Workers die with the host (a watchdog thread
in each, grace.sandbox.worker). Profiles:
- "numpy": RLIMIT_AS (default 4 GiB), short timeout; the sandbox for scoring programs.
- "jax": no RLIMIT_AS (it breaks XLA): a parent watchdog kills a worker over the memory cap; long
  timeout (PPO); no uid drop by default (jax imports lazily from files `nobody` may not read).

Trusted project code runs inside the worker through `pool.call("module:function", source, ...)`:
the worker imports the function, compiles `source` with the restricted compiler and calls
`function(ctx, compiled, *args, **kwargs)` (ctx: grace.sandbox.worker.WorkerContext), which
returns numpy arrays and plain data (the reply unpickler refuses jax arrays)."""

from __future__ import annotations

import asyncio
import fcntl
import functools
import mmap
import os
import pickle
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from grace.sandbox.errors import SandboxError, SandboxUnavailable
from grace.sandbox.policy import Limits
from grace.sandbox.results import REDUCTIONS, Outcome, ResultLease, check_reduced, read_block
from grace.sandbox.slots import Slot, clean_env, remove_stale_roots, shutdown, watch_rss
from grace.sandbox.wire import decode_reply, safe_loads
from grace.tasks.spec import ObsSchema

NOBODY = 65534
_EVALUATE = "grace.sandbox.worker:evaluate_on"
_EVALUATE_REDUCED = "grace.sandbox.worker:evaluate_reduced"
_EVALUATE_INTO = "grace.sandbox.worker:evaluate_into"
_DEBUG = "grace.sandbox.worker:debug_on"


# ============================================================================ parent side

class SandboxPool:
    """A pool of sandboxed worker processes that run reward programs on resident data.

    >>> with SandboxPool(schema, n_workers=2) as pool:        # doctest: +SKIP
    ...     pool.put("demo", {"s": s, "a": a, "s_next": s_next})
    ...     out = pool.evaluate(source, "demo")               # Outcome(ok, (total, comps), ...)
    ...     sums = pool.evaluate(source, "demo", reduce="sum")  # only floats cross
    ...     with pool.evaluate_lease(source, "demo") as res:  # read-only views, no copy
    ...         best = float(res.total.max())

    Thread-safe; `acall` is the asyncio entry point (up to `n_workers` calls run at once).
    """

    def __init__(self, schema: ObsSchema, n_workers: int = 2, limits: Limits | None = None,
                 profile: str = "numpy", pythonpath: list[str] | None = None,
                 drop_privileges: bool | None = None, env: dict[str, str] | None = None,
                 preload: tuple[str, ...] = ()) -> None:
        try:
            import resource  # noqa: F401
        except ImportError:
            raise SandboxUnavailable(
                "the sandbox needs a POSIX system (no `resource` module here); reward programs "
                "cannot be run safely on this platform") from None
        if profile not in ("numpy", "jax"):
            raise ValueError(f"unknown sandbox profile {profile!r}; use 'numpy' or 'jax'")
        self.schema = schema
        self.profile = profile
        self.backend = profile
        self.limits = limits or Limits.for_profile(profile)
        self.n_workers = max(1, int(n_workers))
        pkg_parent = str(Path(__file__).resolve().parents[2])  # the dir holding `grace`
        self._paths = [pkg_parent, *(str(Path(p).resolve()) for p in (pythonpath or []))]
        self._extra_env = env
        if drop_privileges is None:  # jax imports lazily from places 'nobody' may not read
            drop_privileges = os.geteuid() == 0 and profile == "numpy"
        self._drop = bool(drop_privileges) and os.geteuid() == 0
        self._preload: tuple[str, ...] = tuple(preload)
        self._data: dict[str, Any] = {}
        self._batches: dict[str, int] = {}  # data key -> batch size, checked in lease replies
        self._leases: dict[int, int] = {}  # thread id -> workers it holds through leases
        self._lease_lock = threading.RLock()  # re-entrant: a lease may be released by the GC
        self._data_lock = threading.Lock()
        self._closed = False
        remove_stale_roots()
        self._root = tempfile.mkdtemp(prefix=f"grace-sandbox-{os.getpid()}-")
        os.chmod(self._root, 0o711)
        self._slots = [Slot(i) for i in range(self.n_workers)]
        self._free: queue.LifoQueue[Slot] = queue.LifoQueue()  # reuse warm workers
        self._finalizer = weakref.finalize(self, shutdown, self._slots, self._root)
        self._executor = ThreadPoolExecutor(self.n_workers, thread_name_prefix="grace-sandbox")
        try:
            self._start_all()
        except BaseException:
            self.close()
            raise
        for slot in self._slots:
            self._free.put(slot)
        self._watchdog: threading.Thread | None = None
        if self.limits.rss_watchdog_mb:
            self._watchdog = threading.Thread(
                target=watch_rss, args=(self._slots, self.limits.rss_watchdog_mb, lambda: self._closed),
                daemon=True, name="grace-sandbox-rss")
            self._watchdog.start()

    # ------------------------------------------------------------------ lifecycle
    def _start_all(self) -> None:
        for slot in self._slots:
            self._launch(slot)
        failed = [slot for slot in self._slots if not self._handshake(slot, raise_=False)]
        if failed:
            raise RuntimeError(f"sandbox worker failed to start: {failed[0].log_tail(self._root)}")

    def _launch(self, slot: Slot) -> None:
        """Start the process of a slot (the handshake is separate, so starts overlap)."""
        slot.workdir = tempfile.mkdtemp(prefix=f"w{slot.index}-", dir=self._root)
        if self._drop:
            os.chown(slot.workdir, NOBODY, NOBODY)
        shm_fd = -1
        if hasattr(os, "memfd_create"):  # shared memory for large results, one block per worker
            shm_fd = os.memfd_create(f"grace-sandbox-w{slot.index}", os.MFD_CLOEXEC)
            os.ftruncate(shm_fd, self.limits.output_mb * 2**20)
            slot.shm = mmap.mmap(shm_fd, 0, access=mmap.ACCESS_READ)  # the host never writes it
        r_child, w_parent = os.pipe()
        r_parent, w_child = os.pipe()
        boot = (f"import sys; sys.path[:0] = {self._paths!r}; "
                "from grace.sandbox.worker import worker_main; worker_main()")
        log = open(os.path.join(self._root, f"w{slot.index}.log"), "ab")  # noqa: SIM115
        try:
            slot.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", boot, str(r_child), str(w_child), str(shm_fd)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log,
                cwd=slot.workdir, env=clean_env(slot.workdir, self.profile, self._extra_env),
                pass_fds=tuple(fd for fd in (r_child, w_child, shm_fd) if fd >= 0),
                start_new_session=True, close_fds=True)
        finally:
            os.close(r_child)
            os.close(w_child)
            if shm_fd >= 0:
                os.close(shm_fd)
            log.close()
        for fd in (w_parent, r_parent):
            try:  # 1 MiB pipes: fewer context switches when results are large
                fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), 1 << 20)
            except OSError:
                pass
        slot.send = Connection(w_parent, readable=False)
        slot.recv = Connection(r_parent, writable=False)
        slot.kill_reason = None
        init = {"schema": self.schema, "limits": self.limits, "backend": self.backend,
                "drop_uid": NOBODY if self._drop else None, "preload": self._preload,
                # the kernel's parent-death signal follows the launching *thread*: only the main one
                "pdeathsig": threading.current_thread() is threading.main_thread()}
        slot.preloaded = frozenset(self._preload)
        slot.send.send_bytes(pickle.dumps(init))

    def _handshake(self, slot: Slot, raise_: bool = True) -> bool:
        assert slot.recv is not None and slot.send is not None
        try:
            if not slot.recv.poll(self.limits.startup_s):
                raise TimeoutError("no answer")
            msg = safe_loads(slot.recv.recv_bytes())
            if msg[0] != "ready":
                raise RuntimeError(f"unexpected first message {msg[0]!r}")
            slot.uid = int(msg[2])
            with self._data_lock:
                items = list(self._data.items())
            for key, value in items:
                self._put_one(slot, key, value)
        except Exception as e:  # noqa: BLE001
            if raise_:
                slot.reap()
                raise RuntimeError(f"sandbox worker failed to start ({e}): {slot.log_tail(self._root)}") from None
            return False
        slot.dead = False
        return True

    def _respawn(self, slot: Slot) -> None:
        slot.reap()
        shutil.rmtree(slot.workdir, ignore_errors=True)
        self._launch(slot)
        self._handshake(slot)

    def close(self) -> None:
        """Stop every worker (no zombies) and remove the temp dirs. Idempotent."""
        if self._closed:
            return
        self._closed = True
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._finalizer()

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def worker_pids(self) -> list[int]:
        return [s.proc.pid for s in self._slots if s.proc is not None and not s.dead]

    @property
    def workdirs(self) -> list[str]:
        return [s.workdir for s in self._slots]

    @property
    def root(self) -> str:
        """The pool's temp dir (holds one temp dir per worker and the workers' stderr logs)."""
        return self._root

    @property
    def worker_uid(self) -> int:
        """The uid the workers run as (65534 when privileges were dropped)."""
        return next((s.uid for s in self._slots if s.uid >= 0), -1)

    # ------------------------------------------------------------------ resident data
    def _put_one(self, slot: Slot, key: str, payload: bytes | Any) -> None:
        assert slot.send is not None and slot.recv is not None
        blob = payload if isinstance(payload, bytes) else pickle.dumps(("put", key, payload), protocol=5)
        slot.send.send_bytes(blob)
        if not slot.recv.poll(self.limits.startup_s):
            raise TimeoutError("worker did not acknowledge resident data")
        msg = safe_loads(slot.recv.recv_bytes())
        if msg[0] != "ok":
            raise RuntimeError(f"worker refused resident data {key!r}: {msg[1]}")

    def put(self, key: str, value: Any) -> None:
        """Send `value` to every worker once (kept resident, read-only, re-sent on respawn).
        Waits for every worker: raises RuntimeError if this thread holds a result lease."""
        if self._leases.get(threading.get_ident()):
            raise RuntimeError("release your result leases before put(): it needs every worker")
        blob = pickle.dumps(("put", key, value), protocol=5)
        s_next = value.get("s_next") if isinstance(value, dict) else None
        with self._data_lock:
            self._data[key] = blob
            if getattr(s_next, "ndim", 0) >= 1:
                self._batches[key] = int(s_next.shape[0])
            else:
                self._batches.pop(key, None)
        held = [self._free.get() for _ in self._slots]
        try:
            for slot in held:
                if slot.dead:
                    continue  # respawned on next use, with the data
                try:
                    self._put_one(slot, key, blob)
                except (OSError, EOFError, TimeoutError, RuntimeError):
                    slot.reap()
        finally:
            for slot in held:
                self._free.put(slot)

    # ------------------------------------------------------------------ calls
    def _acquire(self) -> Slot:
        if self._closed:
            raise RuntimeError("the sandbox pool is closed")
        slot = self._free.get()
        if slot.dead:
            try:
                self._respawn(slot)
            except BaseException:
                self._free.put(slot)
                raise
        return slot

    def call(self, fn: str, source: str | None, *args: Any, timeout: float | None = None,
             **kwargs: Any) -> Outcome:
        """Run trusted `fn` ("module:function") as `fn(ctx, compile(source), *args, **kwargs)`
        in a worker. Never raises for program failures: they come back in `Outcome.error`."""
        return self._run(fn, source, args, kwargs, timeout)[0]

    def _run(self, fn: str, source: str | None, args: tuple[Any, ...], kwargs: dict[str, Any],
             timeout: float | None, check: Callable[[Slot, Any], Any] | None = None,
             hold: bool = False
             ) -> tuple[Outcome, Slot | None]:
        """`call`, with `check(slot, value)` applied to an ok reply (an exception there means a
        malformed reply: the worker is killed). With `hold`, a slot whose call succeeded is
        returned still held (the caller gives it back), else (outcome, None)."""
        if self._leases.get(threading.get_ident(), 0) >= self.n_workers:
            raise RuntimeError(f"this thread holds all {self.n_workers} workers through result "
                               "leases; release one first (waiting would never end)")
        try:
            slot = self._acquire()
        except RuntimeError as e:
            return Outcome(False, None, SandboxError("crash", str(e)), 0.0), None
        module = fn.partition(":")[0]
        if self._drop and module not in slot.preloaded and module != "grace.sandbox.worker":
            try:
                self._add_preload(slot, module)
            except RuntimeError as e:
                self._free.put(slot)
                return Outcome(False, None, SandboxError("crash", str(e)), 0.0), None
        t0 = time.perf_counter()
        held = False
        try:
            out = self._call_on(slot, fn, source, args, kwargs, timeout, t0, check)
            held = hold and out.ok
            return out, (slot if held else None)
        finally:
            if not held:
                self._free.put(slot)

    def _add_preload(self, slot: Slot, module: str) -> None:
        """A worker that dropped privileges may not be able to import `module` any more (the
        interpreter's stdlib may be unreadable to `nobody`): restart it with `module` imported
        before the drop. Every later (re)start preloads it too."""
        with self._data_lock:
            if module not in self._preload:
                self._preload = (*self._preload, module)
        try:
            self._respawn(slot)
        except RuntimeError:
            with self._data_lock:
                self._preload = tuple(m for m in self._preload if m != module)
            self._respawn(slot)
            raise RuntimeError(f"cannot import the trusted module {module!r} in a worker") from None

    def _call_on(self, slot: Slot, fn: str, source: str | None, args: tuple[Any, ...],
                 kwargs: dict[str, Any], timeout: float | None, t0: float,
                 check: Callable[[Slot, Any], Any] | None = None) -> Outcome:
        assert slot.send is not None and slot.recv is not None
        limit = self.limits.timeout_s if timeout is None else timeout
        cap = self.limits.output_mb * 1024 * 1024 + 4096
        try:
            slot.send.send_bytes(pickle.dumps(("call", fn, source, args, kwargs), protocol=5))
            if not slot.recv.poll(limit):
                slot.kill("timeout")
                slot.reap()
                return Outcome(False, None, SandboxError(
                    "timeout", f"the call took longer than {limit:g} s and was killed"),
                    time.perf_counter() - t0)
            data = slot.recv.recv_bytes(cap)
        except (EOFError, OSError, BrokenPipeError):
            return Outcome(False, None, slot.death_error(self.limits, self._root),
                           time.perf_counter() - t0)
        try:
            status, value, _ = decode_reply(data, slot.shm)
            if status == "ok":
                value = value if check is None else check(slot, value)
                return Outcome(True, value, None, time.perf_counter() - t0)
            kind, message, line = value
            return Outcome(False, None, SandboxError(str(kind), str(message), line),
                           time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - a malformed reply means a compromised worker
            slot.kill("crash")
            slot.reap()
            return Outcome(False, None, SandboxError("crash", f"malformed worker reply: {e}"),
                           time.perf_counter() - t0)

    async def acall(self, fn: str, source: str | None, *args: Any, timeout: float | None = None,
                    **kwargs: Any) -> Outcome:
        """asyncio version of `call` (runs in a thread; at most n_workers run at once)."""
        loop = asyncio.get_running_loop()
        job = functools.partial(self.call, fn, source, *args, timeout=timeout, **kwargs)
        return await loop.run_in_executor(self._executor, job)

    def evaluate(self, source: str, data_key: str, params: dict[str, float] | None = None,
                 timeout: float | None = None, reduce: str | None = None) -> Outcome:
        """Score resident data `{"s", "a", "s_next"}`: value = (total (B,), components dict),
        copied into this process. With `reduce="sum"` or `"mean"`, value = (float, {name: float}),
        reduced in the worker (same validation), so only a few floats come back."""
        if reduce is None:
            return self.call(_EVALUATE, source, data_key, params, timeout=timeout)
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be None or one of {REDUCTIONS}, got {reduce!r}")
        return self._run(_EVALUATE_REDUCED, source, (data_key, params, reduce), {}, timeout,
                         check=lambda slot, value: check_reduced(value))[0]

    async def aevaluate(self, source: str, data_key: str, params: dict[str, float] | None = None,
                        timeout: float | None = None, reduce: str | None = None) -> Outcome:
        """asyncio version of `evaluate`."""
        loop = asyncio.get_running_loop()
        job = functools.partial(self.evaluate, source, data_key, params, timeout, reduce)
        return await loop.run_in_executor(self._executor, job)

    def evaluate_lease(self, source: str, data_key: str, params: dict[str, float] | None = None,
                       timeout: float | None = None) -> ResultLease:
        """`evaluate` without the copy: the result as read-only views onto the worker's shared
        block, valid while the returned lease is held (it holds the worker; release it, e.g.
        with `with`). See grace.sandbox.results for what happens to views kept past release."""
        if not hasattr(os, "memfd_create"):  # no shared block on this platform: read-only copies
            out = self.evaluate(source, data_key, params, timeout)
            for arr in (out.value[0], *out.value[1].values()) if out.ok else ():
                arr.flags.writeable = False
            return ResultLease(out)
        batch = self._batches.get(data_key)
        out, slot = self._run(_EVALUATE_INTO, source, (data_key, params), {}, timeout, hold=True,
                              check=lambda slot, header: read_block(slot.shm, header, batch))
        if slot is None:
            return ResultLease(out)
        owner, total, comps = out.value
        out.value = (total, comps)
        me = threading.get_ident()
        with self._lease_lock:
            self._leases[me] = self._leases.get(me, 0) + 1
        return ResultLease(out, owner, functools.partial(self._end_lease, slot, me))

    async def aevaluate_lease(self, source: str, data_key: str,
                              params: dict[str, float] | None = None,
                              timeout: float | None = None) -> ResultLease:
        """asyncio version of `evaluate_lease` (release the lease from any thread)."""
        loop = asyncio.get_running_loop()
        job = functools.partial(self.evaluate_lease, source, data_key, params, timeout)
        return await loop.run_in_executor(self._executor, job)

    def _end_lease(self, slot: Slot, thread: int, leaked: bool) -> None:
        """A lease is released. If views of the block outlive it, retire the worker: the views
        keep the old block (nobody writes it again) and a respawn gets a fresh one."""
        if leaked:
            slot.shm = None  # unmapped when the last view goes, not before
            slot.reap()
        with self._lease_lock:
            self._leases[thread] -= 1
            if not self._leases[thread]:
                del self._leases[thread]
        self._free.put(slot)

    def debug(self, source: str, data_key: str, params: dict[str, float] | None = None,
              timeout: float | None = None) -> Outcome:
        """The program's `debug()` output on resident data (value: str or None, capped)."""
        return self.call(_DEBUG, source, data_key, params, timeout=timeout)


__all__ = ["Limits", "Outcome", "ResultLease", "SandboxPool", "SandboxUnavailable", "clean_env"]
