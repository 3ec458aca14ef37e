"""Where reward programs run ("where to run"; what to measure is `grace.fitness`).

`Executor` is everything the search and the fitnesses ask of the place programs run;
`LocalExecutor` is the local sandbox worker pool (numpy profile); `RayExecutor`
(`grace.search.ray_executor`, `sandbox.executor = "ray"`) implements the same four methods over
Ray actors that each host such a pool (`grace.api.make_executor` picks one from `[sandbox]`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from grace.config import FitSettings
from grace.tasks import Task

if TYPE_CHECKING:
    from grace.sandbox.pool import Outcome

PRELOAD = ("grace.fitness.offline", "grace.fitness.applied", "grace.fitness.metrics", "grace.types")
"""Imported in each worker before it drops privileges (it cannot read site-packages afterwards)."""
SEQUENTIAL_FIT = ("scipy.optimize",)
"""Also preloaded when the run fits PARAMS by the sequential path (its Nelder-Mead): ~0.5 s of
each worker's start that the default batched path does not need."""
EVERY_FIT = PRELOAD + SEQUENTIAL_FIT
"""What any `[fit]` needs: the default of an executor built without its run's settings."""


def preload_for(fit: FitSettings | None) -> tuple[str, ...]:
    """What a run's workers import before they drop privileges, for its `[fit]` section (None:
    everything any fit needs)."""
    return PRELOAD if fit is not None and (fit.batched or not fit.params) else EVERY_FIT


class Executor(Protocol):
    def put(self, key: str, value: Any) -> None:
        """Make data resident wherever programs run (re-sent to a restarted worker)."""

    async def call(self, fn: str, source: str | None, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Outcome:
        """Run trusted `fn` ("module:function") as `fn(ctx, compile(source), *args, **kwargs)`
        where the data lives; the sandbox's Outcome (ok, value, error, seconds)."""

    async def rewards(self, source: str, batch: Mapping[str, np.ndarray]) -> np.ndarray | None:
        """Per-transition totals of `source` on a small batch {"s", "a", "s_next"} (None if the
        program fails)."""

    def close(self) -> None: ...


class LocalExecutor:
    """The local sandbox worker pool (numpy profile); `timeout` is the default per call."""

    def __init__(self, task: Task, workers: int = 2, timeout: float = 20.0,
                 preload: tuple[str, ...] = EVERY_FIT) -> None:
        from grace.sandbox.pool import SandboxPool

        self.timeout = timeout
        self.pool = SandboxPool(schema=task.schema, n_workers=workers, profile="numpy", preload=preload)

    def put(self, key: str, value: Any) -> None:
        self.pool.put(key, value)

    async def call(self, fn: str, source: str | None, *args: Any, timeout: float | None = None,
                   **kwargs: Any) -> Outcome:
        return await self.pool.acall(fn, source, *args, timeout=self.timeout if timeout is None else timeout,
                                     **kwargs)

    async def rewards(self, source: str, batch: Mapping[str, np.ndarray]) -> np.ndarray | None:
        key = "adhoc"
        self.pool.put(key, dict(batch))
        out = await self.pool.aevaluate(source, key, None)
        return np.asarray(out.value[0]) if out.ok else None

    def close(self) -> None:
        self.pool.close()

