"""The Fitness protocol ("what to measure") and its registry.

A fitness is prepared once per negatives version with the labelled dataset, then scores reward
programs one by one (each `score` is awaited by its own slot of the search, so a fitness may
batch candidates that arrive together, as the PPO fitnesses do). Where the work runs is the
executor's business (`grace.search.executor`: the local sandbox pool, later a cluster).

    FITNESS["offline"]   GRACE's offline discrimination (`grace.fitness.offline`)
    FITNESS["ppo"]       IRL: PPO on the reward, then how expert-like the policy's states are
    FITNESS["ppo-true"]  reward design: PPO on the reward, then the normalised TRUE return
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Protocol

from grace.config import ConfigError, EvolveConfig, FitSettings
from grace.program import RewardProgram
from grace.search.executor import Executor
from grace.tasks import Task
from grace.types import EvalResult, Transitions


class Fitness(Protocol):
    name: str
    """Its key in FITNESS."""

    def prepare(self, data: Transitions, return_range: tuple[float, float] | None = None) -> None:
        """Make `data` resident where programs are scored (called again when negatives change).
        `return_range` = (R_random, R_expert), mean true returns (only `ppo-true` reads it)."""

    async def score(self, program: RewardProgram, seed: int) -> EvalResult:
        """Score one validated program (PARAMS fitted when the fitness fits them). Never raises
        for a program's failure: it comes back as `EvalResult.error`."""

    def describe(self, fitness: float, heldout: float | None, metrics: dict[str, Any],
                 negatives_version: int) -> str:
        """One line for a reward file's provenance: what the number means."""

    def close(self) -> None:
        """Release what the fitness started itself (not the executor it was given)."""


FitnessFactory = Callable[[Task, Executor, EvolveConfig], Fitness]


def _offline(task: Task, executor: Executor, cfg: EvolveConfig) -> Fitness:
    from grace.fitness.offline import OfflineFitness

    return OfflineFitness(executor, fit_settings(cfg, task))


def _ppo(mode: str) -> FitnessFactory:
    def make(task: Task, executor: Executor, cfg: EvolveConfig) -> Fitness:
        from grace.fitness.offline import OfflineFitness
        from grace.fitness.ppo_fitness import PPOFitness

        return PPOFitness(task, OfflineFitness(executor, fit_settings(cfg, task)), mode, cfg.ppo, seed=cfg.seed,
                          disc_max_ref=cfg.fitness.disc_max_ref)

    return make


FITNESS: dict[str, FitnessFactory] = {
    "offline": _offline,
    "ppo": _ppo("ppo"),
    "ppo-true": _ppo("ppo-true"),
}
"""`fitness.kind` (`--fitness-kind`) -> factory(task, executor, run config)."""


def check_kind(kind: str) -> None:
    """ConfigError (one line) unless `kind` names a registered fitness."""
    if kind not in FITNESS:
        raise ConfigError(f"fitness.kind must be one of {', '.join(FITNESS)}, not {kind!r}")


def fit_settings(cfg: EvolveConfig, task: Task) -> FitSettings:
    """The run's `[fit]` section with its discount resolved: `fit.gamma = 0` means the discount
    PPO trains this task with (`grace.fitness.ppo.ppo_settings`), so the episode returns the
    fitness ranks and the terminal value it learns are the ones PPO will see."""
    if cfg.fit.gamma:
        return cfg.fit
    from grace.fitness.ppo import ppo_settings

    discrete = task.action.kind == "discrete"
    return replace(cfg.fit, gamma=float(ppo_settings(task, cfg.ppo.overrides(discrete))["gamma"]))


def make_fitness(kind: str, task: Task, executor: Executor, cfg: EvolveConfig) -> Fitness:
    check_kind(kind)
    return FITNESS[kind](task, executor, cfg)
