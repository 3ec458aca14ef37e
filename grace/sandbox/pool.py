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
block. A call that exceeds its wall-clock timeout gets the worker's whole process group
SIGKILLed; the worker is respawned (resident data re-sent) on next use. The parent unpickles
replies with an allow-listing unpickler (see grace.sandbox.wire). Workers die with the host:
a watchdog thread in each worker ends it when its parent goes away (see grace.sandbox.worker). Profiles:

- "numpy": RLIMIT_AS (default 4 GiB), short timeout; the sandbox for scoring programs.
- "jax": no RLIMIT_AS (it breaks XLA); a watchdog thread in the parent kills a worker whose
  resident memory exceeds the cap; long timeout (PPO training); no uid drop by default (jax
  imports lazily from the interpreter's tree, which `nobody` may not be able to read).

Trusted project code runs inside the worker through `pool.call("module:function", source, ...)`:
the worker imports the function, compiles `source` with the restricted compiler and calls
`function(ctx, compiled, *args, **kwargs)` (ctx: grace.sandbox.worker.WorkerContext). Return
numpy arrays and plain data (jax arrays are not accepted by the reply unpickler).
"""

from __future__ import annotations

import asyncio
import fcntl
import functools
import mmap
import os
import pickle
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from grace.sandbox.errors import SandboxError, SandboxUnavailable
from grace.sandbox.policy import load_policy
from grace.sandbox.slots import Slot, clean_env, remove_stale_roots, rss_mb, shutdown
from grace.sandbox.wire import EXIT_MEMORY, decode_reply, safe_loads
from grace.tasks.spec import ObsSchema

NOBODY = 65534


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker profile (defaults in sandbox/policy.toml [limits.*]).

    Memory sizes in MiB (0 = no limit), times in seconds.
    """

    timeout_s: float = 10.0
    cpu_s: int = 20
    memory_mb: int = 4096
    rss_watchdog_mb: int = 0
    file_size_mb: int = 16
    open_files: int = 256
    processes: int = 512
    output_mb: int = 64
    debug_chars: int = 20000
    startup_s: float = 60.0

    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> Limits:
        """The policy's defaults for `profile` ("numpy" or "jax"), with overrides."""
        table = load_policy().limits.get(profile)
        if table is None:
            raise ValueError(f"unknown sandbox profile {profile!r}; use 'numpy' or 'jax'")
        known = {f.name for f in fields(cls)}
        return replace(cls(**{k: v for k, v in table.items() if k in known}), **overrides)


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


# ============================================================================ parent side

class SandboxPool:
    """A pool of sandboxed worker processes that run reward programs on resident data.

    >>> with SandboxPool(schema, n_workers=2) as pool:        # doctest: +SKIP
    ...     pool.put("demo", {"s": s, "a": a, "s_next": s_next})
    ...     out = pool.evaluate(source, "demo")               # Outcome(ok, (total, comps), ...)

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
            self._watchdog = threading.Thread(target=self._watch_rss, daemon=True,
                                              name="grace-sandbox-rss")
            self._watchdog.start()

    # ------------------------------------------------------------------ lifecycle
    def _start_all(self) -> None:
        for slot in self._slots:
            self._launch(slot)
        failed = [slot for slot in self._slots if not self._handshake(slot, raise_=False)]
        if failed:
            raise RuntimeError(f"sandbox worker failed to start: {self._log_tail(failed[0])}")

    def _launch(self, slot: Slot) -> None:
        """Start the process of a slot (the handshake is separate, so starts overlap)."""
        slot.workdir = tempfile.mkdtemp(prefix=f"w{slot.index}-", dir=self._root)
        if self._drop:
            os.chown(slot.workdir, NOBODY, NOBODY)
        shm_fd = -1
        if hasattr(os, "memfd_create"):  # shared memory for large results, one block per worker
            shm_fd = os.memfd_create(f"grace-sandbox-w{slot.index}", os.MFD_CLOEXEC)
            os.ftruncate(shm_fd, self.limits.output_mb * 2**20)
            slot.shm = mmap.mmap(shm_fd, 0)
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
                raise RuntimeError(f"sandbox worker failed to start ({e}): {self._log_tail(slot)}") from None
            return False
        slot.dead = False
        return True

    def _respawn(self, slot: Slot) -> None:
        slot.reap()
        shutil.rmtree(slot.workdir, ignore_errors=True)
        self._launch(slot)
        self._handshake(slot)

    def _log_tail(self, slot: Slot, n: int = 1500) -> str:
        try:
            data = Path(self._root, f"w{slot.index}.log").read_bytes()[-n:]
            return data.decode("utf-8", "replace").strip() or "(no output)"
        except OSError:
            return "(no log)"

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
        """Send `value` to every worker once (kept resident, read-only, re-sent on respawn)."""
        blob = pickle.dumps(("put", key, value), protocol=5)
        with self._data_lock:
            self._data[key] = blob
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
        try:
            slot = self._acquire()
        except RuntimeError as e:
            return Outcome(False, None, SandboxError("crash", str(e)), 0.0)
        module = fn.partition(":")[0]
        if self._drop and module not in slot.preloaded and module != "grace.sandbox.worker":
            try:
                self._add_preload(slot, module)
            except RuntimeError as e:
                self._free.put(slot)
                return Outcome(False, None, SandboxError("crash", str(e)), 0.0)
        t0 = time.perf_counter()
        try:
            return self._call_on(slot, fn, source, args, kwargs, timeout, t0)
        finally:
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
                 kwargs: dict[str, Any], timeout: float | None, t0: float) -> Outcome:
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
            return Outcome(False, None, self._death(slot), time.perf_counter() - t0)
        try:
            status, value, _ = decode_reply(data, slot.shm)
            if status == "ok":
                return Outcome(True, value, None, time.perf_counter() - t0)
            kind, message, line = value
            return Outcome(False, None, SandboxError(str(kind), str(message), line),
                           time.perf_counter() - t0)
        except Exception as e:  # noqa: BLE001 - a malformed reply means a compromised worker
            slot.kill("crash")
            slot.reap()
            return Outcome(False, None, SandboxError("crash", f"malformed worker reply: {e}"),
                           time.perf_counter() - t0)

    def _death(self, slot: Slot) -> SandboxError:
        """The worker died mid-call: reap it and say why."""
        reason = slot.kill_reason
        rc = slot.reap()
        if reason == "memory" or rc == EXIT_MEMORY:
            return SandboxError("memory", f"the worker exceeded its memory cap "
                                          f"({self.limits.rss_watchdog_mb} MiB resident) and was killed")
        if rc == -signal.SIGXCPU:
            return SandboxError("timeout", f"CPU time limit exceeded ({self.limits.cpu_s} s)")
        if rc is not None and rc < 0:
            name = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            hint = " (possibly out of memory)" if rc == -signal.SIGKILL else ""
            return SandboxError("crash", f"the worker was killed by {name}{hint}: "
                                         f"{self._log_tail(slot, 300)}")
        return SandboxError("crash", f"the worker exited (code {rc}): {self._log_tail(slot, 300)}")

    async def acall(self, fn: str, source: str | None, *args: Any, timeout: float | None = None,
                    **kwargs: Any) -> Outcome:
        """asyncio version of `call` (runs in a thread; at most n_workers run at once)."""
        loop = asyncio.get_running_loop()
        job = functools.partial(self.call, fn, source, *args, timeout=timeout, **kwargs)
        return await loop.run_in_executor(self._executor, job)

    def evaluate(self, source: str, data_key: str, params: dict[str, float] | None = None,
                 timeout: float | None = None) -> Outcome:
        """Score resident data `{"s", "a", "s_next"}`: value = (total (B,), components dict)."""
        return self.call("grace.sandbox.worker:evaluate_on", source, data_key, params,
                         timeout=timeout)

    async def aevaluate(self, source: str, data_key: str, params: dict[str, float] | None = None,
                        timeout: float | None = None) -> Outcome:
        """asyncio version of `evaluate`."""
        return await self.acall("grace.sandbox.worker:evaluate_on", source, data_key, params,
                                timeout=timeout)

    def debug(self, source: str, data_key: str, params: dict[str, float] | None = None,
              timeout: float | None = None) -> Outcome:
        """The program's `debug()` output on resident data (value: str or None, capped)."""
        return self.call("grace.sandbox.worker:debug_on", source, data_key, params,
                         timeout=timeout)

    # ------------------------------------------------------------------ memory watchdog
    def _watch_rss(self) -> None:
        cap = self.limits.rss_watchdog_mb
        while not self._closed:
            for slot in self._slots:
                proc = slot.proc
                if proc is not None and not slot.dead and proc.poll() is None:
                    if rss_mb(proc.pid) > cap:
                        slot.kill("memory")
            time.sleep(0.05)


__all__ = ["Limits", "Outcome", "SandboxPool", "SandboxUnavailable", "clean_env"]
