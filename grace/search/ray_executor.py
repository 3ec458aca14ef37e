"""Evaluation on a Ray cluster: the `Executor` protocol over Ray actors (`sandbox.executor = "ray"`).

Each actor (`SandboxHost`) hosts its own grace sandbox pool: the same policy, limits and uid
drop as the local executor, so untrusted reward code never runs in a Ray worker's own process,
only in the sandbox workers that the actor starts (an actor runs trusted grace code, and decodes
its workers' replies with the sandbox's allow-listing unpickler before Ray sees them). The
archive, the proposer and every decision stay with the driver; the loop applies results by
(round, generation, slot), so which actor answers first changes nothing in the archive.

- Data: `put` stores the value once in Ray's object store; every call carries the references of
  the current data, and an actor (re)loads a key whose reference it has not seen, so an actor that
  Ray restarted gets its data back before its next call.
- Faults: an actor killed mid-call (`RayActorError`) is restarted by Ray (`max_restarts=-1`) and
  the call is sent again (to another actor when there is one; `retries` counts the re-sends), so
  nothing is lost.
- PPO fitness: `train_ppo` splits one batch of candidates over the actors; each trains its share
  in its own jax-profile sandbox worker (on its GPU when `sandbox.ray_actor_gpus` > 0).

`ray` is imported lazily: grace works without it (the `ray` extra installs it).
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from grace.config import ConfigError
from grace.search.executor import EVERY_FIT
from grace.tasks import Task
from grace.types import PPOJob, PPOResult, TaskRef

if TYPE_CHECKING:
    from grace.config.sections import SandboxConfig
    from grace.sandbox.pool import Outcome

RETRY_SECONDS = 300.0
"""How long one call keeps being sent again after its actor died (Ray restarts the actor)."""
CONCURRENCY = 32
"""Threads per actor: calls beyond its sandbox workers wait for a free worker inside the actor,
and control calls (pid, close) never wait behind them."""


def import_ray() -> Any:
    """The `ray` module, or a one-line ConfigError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ConfigError("sandbox.executor = ray needs Ray: pip install 'grace[ray]'") from None
    return ray


class SandboxHost:
    """A Ray actor that hosts one grace sandbox pool (numpy profile) and, for PPO fitness, a
    one-worker jax-profile pool opened on first use. Trusted code only: programs run in the pools."""

    def __init__(self, schema: Any, workers: int, preload: tuple[str, ...] = EVERY_FIT) -> None:
        from grace.sandbox.pool import SandboxPool

        self.pool = SandboxPool(schema=schema, n_workers=workers, profile="numpy", preload=preload)
        self.have: dict[str, str] = {}  # data key -> the object reference it was loaded from
        self.lock = threading.Lock()
        self.ppo_pools: dict[str, Any] = {}

    def pid(self) -> int:
        return os.getpid()

    def _sync(self, refs: list[tuple[str, Any]]) -> None:
        import ray

        with self.lock:
            for key, ref in refs:
                if self.have.get(key) != ref.hex():
                    self.pool.put(key, ray.get(ref))
                    self.have[key] = ref.hex()

    def call(self, refs: list[tuple[str, Any]], fn: str, source: str | None, args: tuple[Any, ...],
             kwargs: dict[str, Any], timeout: float) -> Outcome:
        self._sync(refs)
        return self.pool.call(fn, source, *args, timeout=timeout, **kwargs)

    def rewards(self, source: str, batch: dict[str, np.ndarray], timeout: float) -> np.ndarray | None:
        with self.lock:  # one ad-hoc batch at a time (it is resident under one key)
            self.pool.put("adhoc", batch)
            self.have.pop("adhoc", None)
            out = self.pool.evaluate(source, "adhoc", None, timeout=timeout)
        return np.asarray(out.value[0]) if out.ok else None

    def train_ppo(self, task: TaskRef, job: PPOJob, timeout: float) -> list[PPOResult]:
        from grace.fitness.ppo import open_pool, run_ppo

        key = repr(task)
        with self.lock:
            if key not in self.ppo_pools:
                self.ppo_pools[key] = open_pool(task)
            pool = self.ppo_pools[key]
        return run_ppo(task, job, timeout=timeout, pool=pool)

    def close(self) -> None:
        self.pool.close()
        for pool in self.ppo_pools.values():
            pool.close()


class RayExecutor:
    """`actors` SandboxHost actors of `workers` sandbox workers each; `address` "" starts a local
    Ray instance (`num_cpus` CPUs; None: all of this machine's), "auto" or "HOST:PORT" joins a
    running cluster. `timeout` is the default seconds per call (as for LocalExecutor)."""

    def __init__(self, task: Task, workers: int = 2, timeout: float = 20.0, *, actors: int = 2,
                 address: str = "", actor_cpus: float = 0.0, actor_gpus: float = 0.0,
                 num_cpus: int | None = None, preload: tuple[str, ...] = EVERY_FIT) -> None:
        ray = import_ray()
        self.ray, self.timeout, self.retries = ray, timeout, 0
        self._started = False
        if not ray.is_initialized():  # a local instance gets at least the CPUs its actors reserve
            need = int(np.ceil(actors * (actor_cpus or workers)))
            self._init(address, num_cpus or max(os.cpu_count() or 1, need))
        self._cls = ray.remote(SandboxHost).options(
            num_cpus=actor_cpus or workers, num_gpus=actor_gpus, max_restarts=-1, max_task_retries=0,
            max_concurrency=CONCURRENCY)
        self._args = (task.schema, workers, preload)
        self.actors = [self._cls.remote(*self._args) for _ in range(actors)]
        self._load = [0] * actors
        self._data: dict[str, Any] = {}
        try:  # surface a failed actor start (no CPUs, grace missing on a node) here, not mid-run
            self.pids = ray.get([a.pid.remote() for a in self.actors], timeout=180)
        except Exception as exc:
            self.close()
            raise ConfigError(f"the Ray actors did not start: {type(exc).__name__}: {exc}") from None

    def _init(self, address: str, num_cpus: int) -> None:
        ray = self.ray
        kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                  "logging_level": "WARNING", "configure_logging": True}
        if address:
            kwargs["address"] = address
        else:  # a local instance: its workers import the same grace as this process
            here = str(Path(__file__).resolve().parents[2])  # (task folders travel with the pools)
            kwargs |= {"num_cpus": num_cpus, "runtime_env": {"env_vars": {"PYTHONPATH": here}}}
        try:
            ray.init(**kwargs)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {address}" if address else "a local Ray instance"
            raise ConfigError(f"could not start or join {where}: {exc}") from None
        self._started = True

    # -- the Executor protocol ----------------------------------------------------------------
    def put(self, key: str, value: Any) -> None:
        self._data[key] = self.ray.put(value)

    async def _on_actor(self, method: str, *args: Any) -> Any:
        """`method(*args)` on the least-loaded actor. When that actor dies mid-call the call is sent
        again, to another actor if there is one (Ray restarts the dead one meanwhile), for up to
        RETRY_SECONDS; then the RayActorError propagates."""
        deadline, failed, attempt = time.monotonic() + RETRY_SECONDS, set[int](), 0
        while True:
            pick = [k for k in range(len(self.actors)) if k not in failed] or list(range(len(self.actors)))
            i = min(pick, key=lambda k: (self._load[k], k))
            self._load[i] += 1
            try:
                return await getattr(self.actors[i], method).remote(*args)
            except self.ray.exceptions.RayActorError:
                if time.monotonic() > deadline:
                    raise
                self.retries += 1
                failed = failed | {i} if len(failed) + 1 < len(self.actors) else set()
                attempt += 1
                await asyncio.sleep(min(2.0, 0.1 * 2 ** attempt))
            finally:
                self._load[i] -= 1

    async def call(self, fn: str, source: str | None, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Outcome:
        from grace.sandbox.errors import SandboxError
        from grace.sandbox.pool import Outcome

        limit = self.timeout if timeout is None else timeout
        refs = list(self._data.items())
        try:
            return await self._on_actor("call", refs, fn, source, args, kwargs, limit)
        except self.ray.exceptions.RayError as exc:  # the actor kept dying: the loop retries once
            return Outcome(False, None, SandboxError("crash", f"Ray actor lost: {type(exc).__name__}"), 0.0)

    async def rewards(self, source: str, batch: Mapping[str, np.ndarray]) -> np.ndarray | None:
        try:
            return await self._on_actor("rewards", source, dict(batch), self.timeout)
        except self.ray.exceptions.RayError:
            return None

    async def train_ppo(self, task: TaskRef, job: PPOJob, timeout: float) -> list[PPOResult]:
        """One PPO fitness batch split over the actors in contiguous shares, results in order
        (a candidate's PPO seeds do not depend on the other candidates of its batch)."""
        n = len(job.sources)
        shares = [part.tolist() for part in np.array_split(np.arange(n), min(n, len(self.actors)))]
        parts = await asyncio.gather(*(
            self._on_actor("train_ppo", task, replace(job, sources=tuple(job.sources[i] for i in idx)), timeout)
            for idx in shares if idx))
        return [res for part in parts for res in part]

    def actor_pids(self) -> list[int]:
        """The process ids of the actors (on their nodes), for fault tests and diagnostics; an actor
        Ray is still restarting (`ActorUnavailableError`) is asked again for up to RETRY_SECONDS."""
        deadline, pids = time.monotonic() + RETRY_SECONDS, []
        for actor in self.actors:
            while True:
                try:
                    pids.append(int(self.ray.get(actor.pid.remote(), timeout=120)))
                    break
                except self.ray.exceptions.ActorUnavailableError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.2)
        self.pids = pids
        return self.pids

    def close(self) -> None:
        for actor in self.actors if hasattr(self, "actors") else []:
            try:
                self.ray.get(actor.close.remote(), timeout=30)
            except Exception:  # noqa: BLE001 - a dead actor has nothing left to close
                pass
            self.ray.kill(actor, no_restart=True)
        self.actors = []
        if self._started:
            self.ray.shutdown()
            self._started = False


def make_ray_executor(task: Task, sandbox: SandboxConfig,
                      preload: tuple[str, ...] = EVERY_FIT) -> RayExecutor:
    """The Ray executor of a run's `[sandbox]` section."""
    return RayExecutor(task, workers=sandbox.workers, timeout=sandbox.eval_timeout, actors=sandbox.ray_actors,
                       address=sandbox.ray_address, actor_cpus=sandbox.ray_actor_cpus,
                       actor_gpus=sandbox.ray_actor_gpus, preload=preload)
