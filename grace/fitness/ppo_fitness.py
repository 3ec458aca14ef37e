"""PPO fitness: train PPO on each candidate reward, score the trained policy.

Every candidate is first scored offline (its PARAMS fitted, its worst examples found), then the
candidates that arrive together train in ONE compiled batch (`grace.fitness.ppo.run_ppo`) in a
jax-profile sandbox worker kept for the run (an executor with `train_ppo`, the Ray executor,
spreads the batch over its actors instead).

- mode "ppo" (IRL): fitness = how expert-like the trained policy's states are under a
  discriminator fixed per negatives version (`ExpertSimilarity`, independent of the candidate).
- mode "ppo-true" (reward design): fitness = normalised true return
  (R - R_random) / (R_expert - R_random); marked so in provenance, never an IRL benchmark row.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

from grace.config import PPOConfig
from grace.fitness.discriminator import ExpertSimilarity
from grace.fitness.offline import OfflineFitness
from grace.fitness.ppo import open_pool, run_ppo
from grace.program import ProgramError, RewardProgram
from grace.tasks import Task
from grace.types import EvalResult, PPOJob, PPOResult, TaskRef

MODES = {
    "ppo": "expert-likeness of the PPO policy's states (IRL)",
    "ppo-true": "normalised TRUE return of the PPO policy (reward-design mode, not IRL)",
}


class PPOFitness:
    def __init__(self, task: Task, offline: OfflineFitness, mode: str, ppo: PPOConfig | None = None,
                 seed: int = 0, disc_max_ref: int = 2000) -> None:
        """`ppo`: the run's `[ppo]` section (steps, seeds, timeout, batch window, hyperparameters);
        `disc_max_ref`: fitness.disc_max_ref (expert references of the fixed discriminator)."""
        if mode not in MODES:
            raise ValueError(f"PPO fitness mode must be one of {', '.join(MODES)}, not {mode!r}")
        self.name = mode
        self.task, self.offline, self.mode, self.ppo = TaskRef.of(task), offline, mode, ppo or PPOConfig()
        self.seed, self.disc_max_ref, self.window = seed, disc_max_ref, self.ppo.batch_window
        self.algo_kwargs = self.ppo.overrides(task.action.kind == "discrete")  # over the task's own
        self.disc: ExpertSimilarity | None = None
        # how its policies are compared with the experts (ExpertSimilarity.for_task)
        self.goal, self.same_env = task.kind == "goal", task.demo_env is None
        self.returns: tuple[float, float] = (0.0, 1.0)  # (R_random, R_expert), ppo-true only
        self.batches: list[int] = []
        self._queue: list[tuple[int, str, asyncio.Future[PPOResult]]] = []
        self._tickets = 0
        self._flusher: asyncio.Task[None] | None = None
        self._pool: Any = None

    def prepare(self, data: Any, return_range: tuple[float, float] | None = None) -> None:
        self.offline.prepare(data, return_range)
        if self.mode == "ppo":
            self.disc = ExpertSimilarity.for_task(data, goal=self.goal, same_env=self.same_env, seed=self.seed,
                                                  max_ref=self.disc_max_ref)
        if return_range is not None:
            self.returns = return_range

    async def score(self, program: RewardProgram, seed: int) -> EvalResult:
        ticket = self._tickets = self._tickets + 1  # the batch is ordered by submission, not by who finished first
        off = await self.offline.score(program, seed)
        if not off.ok:
            return off
        try:  # the write-back is re-validated; a refusal is the candidate's error
            fitted = program.with_params(off.params) if off.params else program
        except ProgramError as exc:
            return EvalResult.failed("invalid", str(exc), off.seconds)
        fut: asyncio.Future[PPOResult] = asyncio.get_running_loop().create_future()
        self._queue.append((ticket, fitted.source, fut))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_later())
        res = await fut
        if not res.ok:
            return EvalResult.failed("runtime", f"PPO: {res.error}", off.seconds)
        metrics = dict(off.metrics) | {
            "offline_fitness": off.fitness, "offline_heldout_fitness": off.heldout_fitness,
            "ppo_expert_likeness": res.irl_score, "ppo_true_return": res.true_return_mean,
            "ppo_success": res.success_rate}
        if self.mode == "ppo":
            fit = float(res.irl_score if res.irl_score is not None else float("nan"))
        else:
            lo, hi = self.returns
            fit = (float(res.true_return_mean or 0.0) - lo) / max(hi - lo, 1e-9)
        return replace(off, fitness=fit, heldout_fitness=None, metrics=metrics, seconds=off.seconds + res.run_s)

    async def _flush_later(self) -> None:
        while True:  # wait until no new candidate arrived for one window: then train them together
            n = len(self._queue)
            await asyncio.sleep(self.window)
            if len(self._queue) == n:
                break
        batch, self._queue = sorted(self._queue, key=lambda item: item[0]), []
        self.batches.append(len(batch))
        spread = getattr(self.offline.executor, "train_ppo", None)  # a cluster executor's actors
        try:
            sources = [src for _, src, _ in batch]
            results = (await spread(self.task, self._job(sources), self.ppo.timeout) if spread is not None
                       else await asyncio.to_thread(self._train, sources))
            for (_, _, fut), res in zip(batch, results, strict=True):
                fut.set_result(res)
        except Exception as exc:  # noqa: BLE001 - a whole-batch failure is every candidate's
            for _, _, fut in batch:
                if not fut.done():
                    fut.set_result(PPOResult(error=f"{type(exc).__name__}: {exc}"))
        if self._queue:
            self._flusher = asyncio.create_task(self._flush_later())

    def _job(self, sources: list[str]) -> PPOJob:
        return PPOJob(tuple(sources), self.ppo.steps, self.ppo.seeds, self.seed, self.algo_kwargs,
                      score_states=self.disc if self.mode == "ppo" else None)

    def _train(self, sources: list[str]) -> list[PPOResult]:
        if self._pool is None:
            self._pool = open_pool(self.task)
        return run_ppo(self.task, self._job(sources), timeout=self.ppo.timeout, pool=self._pool)

    def describe(self, fitness: float, heldout: float | None, metrics: dict[str, Any],
                 negatives_version: int) -> str:
        return (f"{fitness:.4f} {self.mode}: {MODES[self.mode]}; offline "
                f"{metrics.get('offline_fitness', float('nan')):.4f}, {self.ppo.steps} PPO steps x "
                f"{self.ppo.seeds} seeds, negatives v{negatives_version}")

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None
