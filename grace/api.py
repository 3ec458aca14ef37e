"""The Python API: the same operations as the CLI.

- `evolve(...)`: run or resume an evolution job (`grace evolve`).
- `resolve_context(...)` + `score_programs(...)`: re-score reward files with a run's fitness
  (`grace eval`, `grace diff`).
"""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from grace.config import ConfigError, DataConfig, EvolveConfig, FitSettings, SandboxConfig
from grace.data.trajectories import load_demos
from grace.fitness.base import check_kind, fit_settings
from grace.program import RewardProgram, printable
from grace.search import negatives as rundata
from grace.search.archive import Archive, ArchiveError, open_reply_source
from grace.search.executor import Executor
from grace.search.loop import Evolution
from grace.search.progress import RunProgress
from grace.search.stats import RunResult
from grace.tasks import Task, get_task
from grace.types import EvalResult


def make_proposer(cfg: EvolveConfig, archive: Archive) -> Any:
    if cfg.proposer.kind == "offline":
        from grace.proposers.offline.operator import OfflineProposer

        return OfflineProposer(max_terms=cfg.proposer.max_terms)
    if cfg.proposer.kind == "llm":
        from grace.proposers.llm.openai_api import LLMProposer

        return LLMProposer(cfg.llm, recorder=archive, open_source=open_reply_source)
    from grace.proposers.llm.vllm import VLLMProposer

    return VLLMProposer(cfg.llm, recorder=archive, open_source=open_reply_source)


def prepare_run(cfg: EvolveConfig | None, out: str | Path | None = None, *, resume: bool = False,
                overwrite: bool = False) -> tuple[EvolveConfig, Path, Archive]:
    """Create (or reopen, with resume=True) a run directory; returns config, dir and archive."""
    if resume:
        run_dir = Path(out or (cfg.out if cfg else ""))
        if not (run_dir / "archive.sqlite").exists():
            raise ArchiveError(f"nothing to resume: {run_dir} has no archive.sqlite")
        saved = EvolveConfig.load(run_dir / "config.toml")  # a first-wave flat file loads too
        cfg = saved if cfg is None else saved.override(_resume_overrides(cfg, saved))
    else:
        assert cfg is not None
        run_dir = Path(out or cfg.out)
        if (run_dir / "archive.sqlite").exists():
            if not overwrite:
                raise ConfigError(f"{run_dir} already holds a run: use --resume {run_dir}, --overwrite, or another --out")
            shutil.rmtree(run_dir)
    cfg = cfg.override(out=str(run_dir)).validate()
    check_kind(cfg.fitness.kind)  # the registry knows the fitness names (grace.fitness.base)
    run_dir.mkdir(parents=True, exist_ok=True)
    archive = Archive(run_dir / "archive.sqlite")
    if not resume:
        cfg.save(run_dir / "config.toml")
        archive.set_meta("config", cfg.to_dict())
    return cfg, run_dir, archive


RESUMABLE = ("search.generations", "search.rounds", "search.max_wall_time", "search.target_fitness",
             "sandbox.workers", "sandbox.executor", "sandbox.ray_address", "sandbox.ray_actors",
             "sandbox.ray_actor_cpus", "sandbox.ray_actor_gpus", "ppo.select_top", "report", "llm.max_calls",
             "llm.max_tokens_total", "llm.base_url")
"""Keys a resume may change (budgets, where to run): the search itself stays as it was."""


def _resume_overrides(given: EvolveConfig, saved: EvolveConfig) -> dict[str, Any]:
    """The resumable keys that `given` sets to something other than the default."""
    default = EvolveConfig()
    return {k: given.get(k) for k in RESUMABLE if given.get(k) != default.get(k)}


def make_executor(task: Task, sandbox: SandboxConfig, fit: FitSettings | None = None) -> Executor:
    """The executor a run's `[sandbox]` section asks for (`sandbox.executor`: local or ray); its
    workers preload what the run's `[fit]` needs (None: any fit)."""
    from grace.search.executor import preload_for

    if sandbox.executor == "ray":
        from grace.search.ray_executor import make_ray_executor

        return make_ray_executor(task, sandbox, preload_for(fit))
    from grace.search.executor import LocalExecutor

    return LocalExecutor(task, workers=sandbox.workers, timeout=sandbox.eval_timeout, preload=preload_for(fit))


def evolve(cfg: EvolveConfig | None = None, *, resume: bool = False, overwrite: bool = False,
           progress: bool = True, task: Task | str | None = None, **overrides: Any) -> RunResult:
    """Run (or resume) an evolution job. `overrides` are config keys: top-level fields, or a
    section with a dict (`search={"generations": 3}`); `task` may be a task name / TOML path (like
    `--task`) or a Task object (e.g. one built in Python)."""
    if isinstance(task, str):
        overrides["task"], task = task, None
    elif task is not None:
        overrides.setdefault("task", str(task.extra.get("toml", task.name)))
    if cfg is None and not resume:
        cfg = EvolveConfig()
    if cfg is not None and overrides:
        cfg = cfg.override(overrides)
    out = overrides.get("out") if resume else None
    cfg, run_dir, archive = prepare_run(cfg, out, resume=resume, overwrite=overwrite)
    task = task or get_task(cfg.task)
    from grace.fitness.base import make_fitness
    executor = make_executor(task, cfg.sandbox, cfg.fit)
    fitness = None
    try:
        fitness = make_fitness(cfg.fitness.kind, task, executor, cfg)
        proposer = make_proposer(cfg, archive)
        evo = Evolution(cfg, run_dir, archive, task, proposer, executor, fitness)
        per_round = (cfg.search.generations + 1) * cfg.search.population * cfg.search.islands
        with RunProgress(per_round * cfg.search.rounds, enabled=progress) as prog:
            evo.progress = prog
            result = asyncio.run(evo.run())
        archive.set_meta("status", result.stats.stopped_because or "finished")
    finally:
        if fitness is not None:
            fitness.close()
        executor.close()
    if cfg.report and result.best is not None:
        try:
            from grace.report import write_report

            write_report(run_dir, run_dir / "report.html")
        except ImportError:
            pass
    archive.close()
    return result


# -- re-scoring (grace eval / grace diff) ---------------------------------------------------------
@dataclass
class ScoreContext:
    """What `grace eval` / `grace diff` score against: a run's inputs (or demos + fresh random
    negatives), with the run's seed and held-out fraction."""

    inputs: rundata.RunInputs
    demos: str
    run_dir: Path | None
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    fit: FitSettings = field(default_factory=FitSettings)

    @property
    def task(self) -> Task:
        return self.inputs.task


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
    task_spec = task or (cfg.task if cfg and run else None)
    if not task_spec:  # from the file's provenance (directly, or via the run it names)
        task_spec = provenance_task((cfg.task if cfg else None) or prov.get("task"))
    demo_spec = demos or (cfg.demos if cfg else None) or prov.get("demos", "").split(" (sha256")[0] or None
    if not task_spec:
        raise ConfigError("no task: pass --task (or --run, or a file with grace provenance)")
    if not demo_spec:
        raise ConfigError("no demos: pass --demos (or --run, or a file with grace provenance)")
    t = get_task(task_spec)
    demos_traj = load_demos(demo_spec, t)
    inputs = None
    if run_dir is not None and (run_dir / "archive.sqlite").exists():
        archive = Archive(run_dir / "archive.sqlite", create=False)
        inputs = rundata.read_run_inputs(archive, run_dir, t, demos_traj)
        archive.close()
    cfg = cfg or EvolveConfig()
    if inputs is None or not inputs.negatives:
        from grace.data.rollout import random_negatives

        negatives = [("random", random_negatives(t, cfg.data.random_negative_episodes, cfg.seed))]
        inputs = rundata.RunInputs(t, demos_traj, negatives)
    return ScoreContext(inputs, demo_spec, run_dir, cfg.seed, cfg.data, fit_settings(cfg, t))


def provenance_task(spec: str | None) -> str | None:
    """A task named by a file's provenance: built-in tasks only. A TOML task (and the code its
    `env = "module:factory"` names) is loaded only when the user passes it with --task."""
    from grace.tasks import task_names

    if spec and spec not in task_names():
        raise ConfigError(f"the file's provenance names task {printable(spec)[:200]!r}, which is not a built-in "
                          "task; task files are loaded only when named with --task")
    return spec


def score_programs(programs: list[RewardProgram], ctx: ScoreContext, fit: bool = False,
                   timeout: float = 60.0) -> list[EvalResult]:
    """Score programs with the offline fitness in the sandbox; one EvalResult each."""
    from grace.fitness.offline import OfflineFitness
    from grace.search.executor import LocalExecutor

    for p in programs:
        p.validate(ctx.task.schema)
    data = ctx.inputs.dataset(ctx.data, ctx.seed)
    ex = LocalExecutor(ctx.task, workers=min(2, len(programs)), timeout=timeout)
    try:
        fitness = OfflineFitness(ex, replace(ctx.fit, params=fit, terminal=fit))  # no --fit: the file as it is
        fitness.prepare(data)

        async def go() -> list[EvalResult]:
            return await asyncio.gather(*(fitness.score(p, ctx.seed) for p in programs))

        return asyncio.run(go())
    finally:
        ex.close()
