"""Where candidates are evaluated. The loop only sees this interface.

`LocalExecutor` runs everything in the local sandbox pool; a cluster executor (Ray, ...) would
implement the same three methods.
"""

from __future__ import annotations

from typing import Any, Protocol

from grace.tasks import Task

OFFLINE_FN = "grace.fitness.offline:evaluate_in_worker"
# Imported in each worker before it drops privileges (it cannot read site-packages afterwards).
PRELOAD = ("grace.fitness.offline", "grace.fitness.metrics", "scipy.optimize", "scipy.special", "scipy.stats")


class Executor(Protocol):
    def put(self, key: str, value: Any) -> None:
        """Make data resident wherever evaluations run."""

    async def score(self, source: str, *, data_key: str, fit_params: bool, seed: int,
                    params: dict[str, float]) -> Any:
        """Evaluate one program; returns the sandbox's Outcome (ok, value, error, seconds)."""

    def close(self) -> None: ...


class LocalExecutor:
    """The local sandbox worker pool (numpy profile)."""

    def __init__(self, task: Task, workers: int = 2, timeout: float = 20.0) -> None:
        from grace.sandbox import SandboxPool

        self.timeout = timeout
        self.pool = SandboxPool(schema=task.schema, n_workers=workers, profile="numpy", preload=PRELOAD)

    def put(self, key: str, value: Any) -> None:
        self.pool.put(key, value)

    async def score(self, source: str, *, data_key: str, fit_params: bool, seed: int,
                    params: dict[str, float]) -> Any:
        return await self.pool.acall(OFFLINE_FN, source, data_key=data_key, params=params,
                                     fit_params=fit_params, seed=seed, timeout=self.timeout)

    def close(self) -> None:
        self.pool.close()
