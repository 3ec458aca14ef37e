"""Re-score any reward file with the same offline fitness a run uses (`grace eval`, `grace diff`)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grace.config import ConfigError, EvolveConfig
from grace.demos import load_demos
from grace.evolve import data as rundata
from grace.evolve.archive import Archive
from grace.program import RewardProgram
from grace.tasks import Task, get_task


@dataclass
class ScoreContext:
    task: Task
    demos: str
    run_dir: Path | None
    negatives: list
    seed: int = 0
    holdout: float = 0.25


def resolve_context(program: RewardProgram, task: str | None, demos: str | None, run: str | None) -> ScoreContext:
    """Task and demos from flags, else from a run directory, else from the file's provenance."""
    run_dir = Path(run) if run else None
    prov = program.provenance
    cfg = None
    if run_dir is None and prov.get("run"):
        candidate = Path(prov["run"].split(" round ")[0])
        if (candidate / "config.toml").exists():
            run_dir = candidate
    if run_dir is not None:
        if not (run_dir / "config.toml").exists():
            raise ConfigError(f"{run_dir} is not a grace run directory (no config.toml)")
        cfg = EvolveConfig.load(run_dir / "config.toml")
    task_spec = task or (cfg.task if cfg else None) or prov.get("task")
    demo_spec = demos or (cfg.demos if cfg else None) or prov.get("demos", "").split(" (sha256")[0] or None
    if not task_spec:
        raise ConfigError("no task: pass --task (or --run, or a file with grace provenance)")
    if not demo_spec:
        raise ConfigError("no demos: pass --demos (or --run, or a file with grace provenance)")
    t = get_task(task_spec)
    negatives: list = []
    if run_dir is not None and (run_dir / "archive.sqlite").exists():
        archive = Archive(run_dir / "archive.sqlite", create=False)
        negatives = rundata.negative_sets(archive, run_dir, t, rundata.negatives_version(archive))
        archive.close()
    seed, holdout = (cfg.seed, cfg.holdout) if cfg else (0, 0.25)
    if not negatives:
        from grace.fitness.offline import random_negatives

        negatives = [("random", random_negatives(t, EvolveConfig().random_negative_episodes, seed))]
    return ScoreContext(t, demo_spec, run_dir, negatives, seed, holdout)


def score_programs(programs: list[RewardProgram], ctx: ScoreContext, fit: bool = False,
                   timeout: float = 60.0) -> list[Any]:
    """Score programs in the sandbox; returns the sandbox Outcomes (value = fitness dict)."""
    from grace.evolve.executor import LocalExecutor
    from grace.fitness.offline import build_offline_data

    for p in programs:
        p.validate(ctx.task.schema)
    demos = load_demos(ctx.demos, ctx.task)
    data = build_offline_data(ctx.task, demos, ctx.negatives, holdout=ctx.holdout, seed=ctx.seed)
    ex = LocalExecutor(ctx.task, workers=min(2, len(programs)), timeout=timeout)
    try:
        ex.put("offline", data)

        async def go() -> list[Any]:
            return await asyncio.gather(*(
                ex.score(p.source, data_key="offline", fit_params=fit, seed=ctx.seed, params=p.params)
                for p in programs))

        return asyncio.run(go())
    finally:
        ex.close()
