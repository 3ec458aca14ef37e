"""Where candidates are evaluated. The loop only sees this interface.

`LocalExecutor` runs everything in the local sandbox pool; a cluster executor (Ray, ...) would
implement the same three methods.
"""

from __future__ import annotations

from typing import Any, Protocol

from grace.config import FitSettings, PPOConfig
from grace.tasks import Task

OFFLINE_FN = "grace.fitness.offline:evaluate_in_worker"
# Imported in each worker before it drops privileges (it cannot read site-packages afterwards).
PRELOAD = ("grace.fitness.offline", "grace.fitness.metrics", "scipy.optimize", "scipy.special", "scipy.stats")


class Executor(Protocol):
    def put(self, key: str, value: Any) -> None:
        """Make data resident wherever evaluations run."""

    async def score(self, source: str, *, data_key: str, fit: FitSettings, seed: int,
                    params: dict[str, float]) -> Any:
        """Evaluate one program with the run's `[fit]` settings; returns the sandbox's Outcome
        (ok, value, error, seconds)."""

    def close(self) -> None: ...


class LocalExecutor:
    """The local sandbox worker pool (numpy profile)."""

    def __init__(self, task: Task, workers: int = 2, timeout: float = 20.0) -> None:
        from grace.sandbox.pool import SandboxPool

        self.timeout = timeout
        self.pool = SandboxPool(schema=task.schema, n_workers=workers, profile="numpy", preload=PRELOAD)

    def put(self, key: str, value: Any) -> None:
        self.pool.put(key, value)

    async def score(self, source: str, *, data_key: str, fit: FitSettings, seed: int,
                    params: dict[str, float]) -> Any:
        return await self.pool.acall(OFFLINE_FN, source, data_key=data_key, params=params,
                                     fit=fit, seed=seed, timeout=self.timeout)

    async def rewards(self, source: str, batch: dict[str, Any]) -> Any:
        """Per-transition totals of `source` on a small batch (None if the program fails)."""
        key = "adhoc"
        self.pool.put(key, batch)
        out = await self.pool.aevaluate(source, key, None)
        return out.value[0] if out.ok else None

    def close(self) -> None:
        self.pool.close()


class PPOExecutor:
    """PPO fitness: every candidate is first scored offline (and its PARAMS fitted), then the
    candidates that arrive together train in ONE compiled batch in a jax-profile sandbox worker.

    mode "ppo" (IRL): fitness = how expert-like the trained policy's states are under a
    discriminator fixed per round (`ExpertSimilarity`, independent of the candidate).
    mode "ppo-true" (reward design): fitness = normalised true return (R - R_random) /
    (R_expert - R_random); marked so in provenance and never used for IRL benchmark rows.
    """

    def __init__(self, task: Task, offline: Executor, mode: str, ppo: PPOConfig, seed: int = 0,
                 disc_max_ref: int = 2000) -> None:
        if mode not in ("ppo", "ppo-true"):
            raise ValueError(f"PPO fitness mode must be 'ppo' or 'ppo-true', not {mode!r}")
        self.task, self.offline, self.mode, self.ppo = task, offline, mode, ppo
        self.steps, self.seeds, self.seed, self.window, self.timeout = ppo.steps, ppo.seeds, seed, ppo.batch_window, ppo.timeout
        self.disc_max_ref = disc_max_ref
        self._queue: list[tuple[str, Any]] = []
        self._flusher: Any = None
        self._pool: Any = None
        self.disc: Any = None
        self.returns: tuple[float, float] | None = None  # (R_random, R_expert), ppo-true only
        self.batches: list[int] = []

    def put(self, key: str, value: Any) -> None:
        self.offline.put(key, value)
        if key == "offline":
            from grace.fitness.discriminator import ExpertSimilarity

            self.disc = ExpertSimilarity.from_data(value, seed=self.seed, max_ref=self.disc_max_ref)

    async def rewards(self, source: str, batch: dict[str, Any]) -> Any:
        return await self.offline.rewards(source, batch)

    def set_return_range(self, random_return: float, expert_return: float) -> None:
        self.returns = (random_return, expert_return)

    async def score(self, source: str, *, data_key: str, fit: FitSettings, seed: int,
                    params: dict[str, float]) -> Any:
        import asyncio

        from grace.program import RewardProgram
        from grace.sandbox.pool import Outcome

        off = await self.offline.score(source, data_key=data_key, fit=fit, seed=seed, params=params)
        if not off.ok:
            return off
        fitted = RewardProgram(source).with_params(off.value["params"]) if off.value.get("params") else RewardProgram(source)
        fut = asyncio.get_running_loop().create_future()
        self._queue.append((fitted.source, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())
        res = await fut
        if not res["ok"]:
            from grace.sandbox.errors import SandboxError

            return Outcome(ok=False, error=SandboxError("runtime", f"PPO: {res['error']}"), seconds=off.seconds)
        value = dict(off.value)
        metrics = dict(value.get("metrics", {}))
        metrics |= {"offline_fitness": value["fitness"], "offline_heldout_fitness": value.get("heldout_fitness"),
                    "ppo_expert_likeness": res.get("irl_score"), "ppo_true_return": res["true_return_mean"],
                    "ppo_success": res.get("success_rate")}
        if self.mode == "ppo":
            fit = float(res["irl_score"])
        else:
            lo, hi = self.returns or (0.0, 1.0)
            fit = (res["true_return_mean"] - lo) / max(hi - lo, 1e-9)
        value.update(fitness=fit, heldout_fitness=None, metrics=metrics)
        return Outcome(ok=True, value=value, seconds=off.seconds + res.get("run_s", 0.0))

    async def _flush_later(self) -> None:
        import asyncio

        while True:  # wait until no new candidate arrived for one window: then train them together
            n = len(self._queue)
            await asyncio.sleep(self.window)
            if len(self._queue) == n:
                break
        batch, self._queue = self._queue, []
        self.batches.append(len(batch))
        try:
            results = await asyncio.to_thread(self._train, [src for src, _ in batch])
            for (_, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)
        except Exception as exc:  # a whole-batch failure is reported to every candidate
            for _, fut in batch:
                if not fut.done():
                    fut.set_result({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
        if self._queue:
            self._flusher = asyncio.create_task(self._flush_later())

    def _train(self, sources: list[str]) -> list[dict[str, Any]]:
        from grace.sandbox.pool import SandboxPool
        from grace.search.active import PPO_FN, task_spec

        if self._pool is None:
            self._pool = SandboxPool(self.task.schema, n_workers=1, profile="jax")
        algo_kwargs = self.ppo.algo_kwargs(self.task.action.kind == "discrete")
        out = self._pool.call(PPO_FN, None, task_spec(self.task), sources, self.steps, self.seeds, self.seed,
                              algo_kwargs, self.disc if self.mode == "ppo" else None, False, 1, timeout=self.timeout)
        return out.unwrap()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
        self.offline.close()
