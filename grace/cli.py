"""`grace`: evolve, show, eval, diff, train, export, report, demos, tasks.

Every command turns bad input into one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
import json
import sqlite3
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from grace.config.flags import EVOLVE_FLAGS, FIXED_PARAMS, HIDDEN_ALIASES, evolve_params

__all__ = ["EVOLVE_FLAGS", "HIDDEN_ALIASES", "app"]

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__,
                  pretty_exceptions_enable=False)
demos_app = typer.Typer(no_args_is_help=True, help="Make or summarise expert demos.")
app.add_typer(demos_app, name="demos")
console = Console()


def _user_errors() -> tuple[type[BaseException], ...]:
    from grace.config import ConfigError
    from grace.data.trajectories import DemoError
    from grace.program import ProgramError
    from grace.search.archive import ArchiveError
    from grace.tasks import SchemaError
    from grace.tasks.brax_expert import ExpertError

    errors: list[type[BaseException]] = [ConfigError, DemoError, ArchiveError, ProgramError, SchemaError, ExpertError]
    try:
        from grace.sandbox.errors import SandboxError, SandboxUnavailable

        errors += [SandboxError, SandboxUnavailable]
    except ImportError:
        pass
    return tuple(errors)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Bad input -> `error: <one line>` on stderr, exit 2. Never a traceback for user error."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except _user_errors() as exc:
            from grace.program import printable

            typer.echo(f"error: {printable(exc)}", err=True)
            raise typer.Exit(2) from None
        except (OSError, sqlite3.Error) as exc:
            from grace.search.archive import storage_error

            message = storage_error(exc)
            if message is None:
                raise
            typer.echo(f"error: {message} (nothing accepted is lost; free space or fix permissions, "
                       "then resume with --resume)", err=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            typer.echo("interrupted: everything accepted so far is in the archive (resume with --resume)", err=True)
            raise typer.Exit(130) from None

    return wrapper


# -- evolve ---------------------------------------------------------------------------------------
def _evolve(**kwargs: Any) -> None:
    """Evolve a reward program from expert demos (resumable)."""
    from grace.api import evolve as run_evolve
    from grace.config import ConfigError, EvolveConfig

    config, assignments = kwargs.pop("config"), kwargs.pop("set_") or []
    resume, overwrite, quiet = kwargs.pop("resume"), kwargs.pop("overwrite"), kwargs.pop("quiet")
    flags: dict[str, Any] = {}
    for name in sorted(kwargs, key=lambda n: not n.startswith("alias_")):  # dedicated flags win
        value = kwargs[name]
        if value is not None:
            flags[_EVOLVE_NAMES[name]] = tuple(value) if isinstance(value, list) else value
    cfg = EvolveConfig.load(config) if config else EvolveConfig()
    for assignment in assignments:
        cfg = cfg.set(assignment)
    cfg = cfg.override(flags)
    if resume:
        result = run_evolve(cfg, resume=True, progress=not quiet, out=resume)
    else:
        for spec in cfg.init:
            if not Path(spec).is_file():
                raise ConfigError(f"--init file {spec} does not exist")
            from grace.program import read_reward_file

            read_reward_file(spec)  # not UTF-8 -> one line before the run starts
        if cfg.demos:
            from grace.data.trajectories import load_demos
            from grace.tasks import get_task

            load_demos(cfg.demos, get_task(cfg.task), cfg.data.max_demo_mb)  # bad demos: one line, no run dir
        result = run_evolve(cfg, overwrite=overwrite, progress=not quiet)
    st = result.stats
    best = result.best
    if st.stopped_because:
        console.print(f"[yellow]stopped:[/] {st.stopped_because} (continue with grace evolve --resume {result.run_dir})")
    console.print(f"evaluated {st.evaluated} programs ({st.errors} errors, {st.invalid} invalid, {st.duplicates} duplicates)")
    from grace.search.archive import Archive

    run_archive = Archive(Path(result.run_dir) / "archive.sqlite", create=False)
    if run_archive.call_stats():
        console.print(_call_summary(run_archive))
    if best is None:
        console.print("[red]no program was scored successfully[/]")
        raise typer.Exit(1)
    held = best.heldout if best.heldout is not None else float("nan")
    console.print(f"best fitness {best.fitness:.4f} (held-out {held:.4f}), "
                  f"accuracy {best.metrics.get('accuracy_train', float('nan')):.3f} (held-out {best.metrics.get('accuracy_heldout', float('nan')):.3f})")
    console.print(f"best reward: {result.best_path}")


_generated, _EVOLVE_NAMES = evolve_params()
_ordered = ([p for p in _generated if "__" not in p.name and p.name.startswith("opt_")] + FIXED_PARAMS
            + [p for p in _generated if "__" in p.name or not p.name.startswith("opt_")])
_evolve.__signature__ = inspect.Signature(_ordered)  # type: ignore[attr-defined]
_evolve.__annotations__ = {p.name: p.annotation for p in _ordered}
app.command("evolve")(user_errors(_evolve))


# -- show / eval / diff ---------------------------------------------------------------------------
@app.command()
@user_errors
def show(run: Annotated[Path, typer.Argument(help="Run directory.")],
         top: Annotated[int, typer.Option(help="How many programs.")] = 5,
         code: Annotated[bool, typer.Option(help="Print the best program's code.")] = True) -> None:
    """Top programs, metrics, lineage, proposer calls and cost of a run."""
    from grace.search.archive import Archive

    archive = Archive(run / "archive.sqlite", create=False)
    rows = archive.top(top)
    t = Table(title=f"{run}: top {len(rows)}")
    for col in ("#", "program", "gen", "op", "fitness", "held-out", "acc", "AUC", "returns", "size"):
        t.add_column(col)  # returns: share of (expert, negative) episode pairs the expert out-earns
    for r in rows:
        t.add_row(str(r.id), r.program_id, f"{r.round}.{r.generation}", r.operator, f"{r.fitness:.4f}",
                  f"{r.heldout:.4f}" if r.heldout is not None else "-", f"{r.metrics.get('accuracy_train', float('nan')):.3f}",
                  f"{r.metrics.get('auc_train', float('nan')):.3f}",
                  f"{r.metrics.get('return_ranking_train', float('nan')):.3f}", str(r.size))
    console.print(t)
    counts = archive.status_counts()
    console.print("programs: " + ", ".join(f"{s} {n}" for s, n in counts.items()))
    _show_selection(archive)
    calls = archive.call_stats()
    if calls:
        ct = Table(title="proposer calls")
        for col in ("operator", "calls", "replies", "errors", "cached", "prompt tok", "completion tok",
                    "mean latency s"):
            ct.add_column(col)
        for c in calls:
            replies = int(c["calls"]) - int(c["cached"] or 0) - int(c["errors"] or 0)
            ct.add_row(str(c["operator"]), str(c["calls"]), str(replies), str(c["errors"]), str(c["cached"]),
                       str(c["prompt_tokens"]), str(c["completion_tokens"]), f"{c['latency']:.2f}")
        console.print(ct)
        console.print(_call_summary(archive))
    if rows:
        lineage = archive.lineage(rows[0].id)
        console.print("lineage of the best: " + " <- ".join(f"{r.program_id}({r.operator})" for r in lineage))
        if code:
            from rich.syntax import Syntax

            from grace.program import printable

            console.print(Syntax(printable(rows[0].best_source), "python"))


def _call_summary(archive: Any) -> str:
    from grace.proposers.llm.accounting import call_summary

    return call_summary(archive.call_stats(), archive.call_errors())


def _score_one(file: Path, task: str | None, demos: str | None, run: str | None, fit: bool) -> tuple[Any, Any]:
    from grace.api import resolve_context, score_programs
    from grace.program import RewardProgram

    if not file.is_file():
        from grace.config import ConfigError

        raise ConfigError(f"{file} does not exist")
    program = RewardProgram.from_file(file)
    ctx = resolve_context(program, task, demos, run)
    program.validate(ctx.task.schema)
    return program, score_programs([program], ctx, fit=fit)[0]


def _show_selection(archive: Any) -> None:
    """PPO in the loop: per round, the candidates, their policies' expert-likeness and the cost."""
    from grace.search.ppo_select import shown_rows

    for rnd in sorted({g["round"] for g in archive.completed_generations()}):
        if not (rec := archive.get_meta(f"ppo_select_r{rnd}")):
            continue
        st = Table(title=f"PPO in the loop, round {rnd}: {rec['steps']} steps x {rec['seeds']} seeds, "
                         f"{rec['env_steps']} env steps, {rec['seconds']:.0f} s")
        for col in ("program", "offline rank", "fitness", "policy expert-likeness", "chosen"):
            st.add_column(col)
        for row in shown_rows(rec):
            st.add_row(*row)
        console.print(st)
        if rec.get("compared_with"):
            console.print(f"policies compared with: {rec['compared_with']}")
        if rec.get("why"):
            console.print(f"chosen: {rec['why']}")


@app.command("eval")
@user_errors
def eval_cmd(file: Annotated[Path, typer.Argument(help="A reward file.")],
             task: Annotated[str | None, typer.Option(help="Task (default: from --run or the file's provenance).")] = None,
             demos: Annotated[str | None, typer.Option(help="Expert demos (default: from --run or provenance).")] = None,
             run: Annotated[str | None, typer.Option(help="Score against this run's task, demos and negatives.")] = None,
             fit: Annotated[bool, typer.Option(help="Refit PARAMS before scoring.")] = False,
             json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Re-score any reward file (e.g. a hand-edited one) with the run's offline fitness."""
    program, res = _score_one(file, task, demos, run, fit)
    if not res.ok:
        from grace.program import printable

        typer.echo(f"error: {printable(res.error)}", err=True)
        raise typer.Exit(2)
    m = res.metrics
    summary = {"file": str(file), "program_id": program.program_id, "fitness": res.fitness,
               "heldout_fitness": res.heldout_fitness, "accuracy": m.get("accuracy_train"),
               "heldout_accuracy": m.get("accuracy_heldout"), "auc": m.get("auc_train"), "size": program.size,
               **dict(m), "params": res.params}
    if json_out:
        typer.echo(json.dumps(summary, indent=2, default=float))
        return
    t = Table(title=str(file))
    t.add_column("metric")
    t.add_column("value")
    for k, v in summary.items():
        if isinstance(v, float):
            t.add_row(k, f"{v:.4f}")
        elif not isinstance(v, dict):
            t.add_row(k, str(v))
    console.print(t)


@app.command()
@user_errors
def diff(a: Annotated[Path, typer.Argument(help="First reward file.")],
         b: Annotated[Path, typer.Argument(help="Second reward file.")],
         task: Annotated[str | None, typer.Option()] = None,
         demos: Annotated[str | None, typer.Option()] = None,
         run: Annotated[str | None, typer.Option()] = None) -> None:
    """Two programs side by side with their metrics."""
    import difflib

    from rich.columns import Columns
    from rich.syntax import Syntax

    pa, oa = _score_one(a, task, demos, run, False)
    pb, ob = _score_one(b, task, demos, run, False)
    t = Table(title="metrics")
    t.add_column("metric")
    t.add_column(str(a))
    t.add_column(str(b))
    rows = [("fitness", oa.fitness, ob.fitness), ("heldout_fitness", oa.heldout_fitness, ob.heldout_fitness),
            ("size", pa.size, pb.size)]
    rows += [(k, oa.metrics.get(k), ob.metrics.get(k)) for k in ("accuracy_train", "accuracy_heldout", "auc_train", "traj_ranking_train",
                                                               "return_ranking_train", "return_ranking_heldout",
                                                               "potential_progress_heldout", "potential_above_heldout")]
    for name, x, y in rows:
        fmt = lambda v: "-" if v is None else (f"{v:.4f}" if isinstance(v, float) else str(v))  # noqa: E731
        t.add_row(name, fmt(x), fmt(y))
    from grace.program import printable

    console.print(Columns([Syntax(printable(pa.source), "python"), Syntax(printable(pb.source), "python")],
                          equal=True, expand=True))
    console.print(t)
    udiff = "".join(difflib.unified_diff(pa.source.splitlines(True), pb.source.splitlines(True), str(a), str(b)))
    console.print(Syntax(printable(udiff) or "(identical)", "diff"))


# -- train / export / report ----------------------------------------------------------------------
@app.command()
@user_errors
def train(file: Annotated[Path, typer.Argument(help="A reward file.")],
          task: Annotated[str, typer.Option(help="Task to train on.")],
          steps: Annotated[int, typer.Option(help="Env steps per seed.")] = 200_000,
          seeds: Annotated[int, typer.Option(help="Seeds.")] = 3,
          out_dir: Annotated[str, typer.Option("--out", help="Output folder (plot + summary.json).")] = "runs/train",
          json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False,
          ppo: Annotated[list[str] | None, typer.Option("--ppo", help="A PPO setting over the task's, e.g. gamma=0.9 (repeatable).")] = None,
          terms: Annotated[bool, typer.Option("--terms", help="Also train each named term alone.")] = False) -> None:
    """PPO on a reward file; true return vs true-reward PPO trained the same way."""
    from grace.train import train_command

    raise typer.Exit(train_command(str(file), task, steps, seeds, out_dir, json_out, ppo or [], terms))


@app.command()
@user_errors
def export(file: Annotated[Path, typer.Argument(help="A reward file.")],
           to: Annotated[str, typer.Option(help="module | gymnasium | brax | gymnax | imitation.")] = "module",
           output: Annotated[Path, typer.Option("-o", "--output", help="Output .py file.")] = Path("reward_export.py"),
           task: Annotated[str | None, typer.Option(help="Task (default: the file's provenance).")] = None) -> None:
    """A standalone reward module (no grace dependency) for other RL codebases."""
    from grace.api import provenance_task
    from grace.config import ConfigError
    from grace.export import export_program
    from grace.program import RewardProgram
    from grace.tasks import get_task

    if not file.is_file():
        raise ConfigError(f"{file} does not exist")
    program = RewardProgram.from_file(file)
    task_spec = task or provenance_task(program.provenance.get("task"))
    if not task_spec:
        raise ConfigError("no task: pass --task (the file has no grace provenance)")
    t = get_task(task_spec)
    program.validate(t.schema)
    try:
        text = export_program(program, t, to)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    _write_text(output, text)
    console.print(f"wrote {output} ({to})")


def _write_text(path: Path, text: str) -> None:
    """Write a user-named output file, creating its folder; an OS failure is one line."""
    from grace.config import ConfigError

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}") from None


@app.command()
@user_errors
def report(run: Annotated[Path, typer.Argument(help="Run directory.")],
           output: Annotated[Path | None, typer.Option("-o", "--output", help="HTML file (default RUN/report.html).")] = None) -> None:
    """A self-contained HTML report of a run."""
    from grace.report import write_report

    path = write_report(run, output or run / "report.html")
    console.print(f"wrote {path}")


# -- demos and tasks ------------------------------------------------------------------------------
@demos_app.command("collect")
@user_errors
def demos_collect(task: Annotated[str, typer.Option(help="Task.")],
                  episodes: Annotated[int, typer.Option(help="Episodes.")] = 8,
                  out_file: Annotated[Path, typer.Option("--out", help="Output .npz.")] = Path("demos.npz"),
                  seed: Annotated[int, typer.Option(help="Seed.")] = 0,
                  imitation: Annotated[bool, typer.Option(help="Write imitation's npz layout instead.")] = False,
                  train_steps: Annotated[int, typer.Option(help="Brax tasks: train the expert anew for this many env steps (0: load the saved one, or train for the task's default).")] = 0) -> None:
    """Collect expert demos with the task's scripted or trained expert (Brax locomotion: brax PPO, trained first if needed)."""
    from grace.config import ConfigError
    from grace.data.rollout import collect_expert
    from grace.tasks import brax_expert, get_task

    t = get_task(task)
    if t.name in brax_expert.EXPERT_PPO and (train_steps or not brax_expert.default_params_path(t.name).is_file()):
        _train_brax_expert(t.name, train_steps or brax_expert.EXPERT_STEPS[t.name], seed, brax_expert)
    traj = collect_expert(t, episodes, seed)
    try:
        out_file.parent.mkdir(parents=True, exist_ok=True)
        (traj.save_imitation if imitation else traj.save)(out_file)
    except OSError as exc:
        raise ConfigError(f"cannot write {out_file}: {exc.strerror or exc}") from None
    console.print(f"wrote {out_file}: {traj.n_episodes} episodes, {traj.n_transitions} transitions, "
              f"expert return {traj.meta['mean_return']:.2f} +- {traj.meta['std_return']:.2f}")


def _train_brax_expert(name: str, steps: int, seed: int, bx: Any) -> None:
    from rich.progress import Progress
    bx.check_budget(name, steps)
    with Progress(console=console) as bar:
        job = bar.add_task(f"{name} expert: brax PPO", total=steps)
        prov = bx.train_expert(name, steps, seed, bx.default_params_path(name), progress=lambda n, r: bar.update(
            job, completed=n, description=f"{name} expert: brax PPO, eval return {r:.0f}"))
    console.print(f"wrote {bx.default_params_path(name)}: eval return {prov['final_eval_return']:.1f} after {steps:,} env steps ({prov['train_seconds']:.0f} s, {prov['steps_per_second']:.0f} env steps/s)")


@demos_app.command("show")
@user_errors
def demos_show(file: Annotated[str, typer.Argument(help="A demo file (.npz, .hdf5), an imitation datasets folder, or minari:<id>.")],
               task: Annotated[str | None, typer.Option(help="Validate against this task's schema.")] = None,
               max_mb: Annotated[float, typer.Option(help="Refuse files over this many MiB uncompressed.")] = 1024.0,
               json_out: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Summarise a demo file: episodes, lengths, expert return, provenance."""
    from grace.data.trajectories import load_demos, summarise
    from grace.tasks import get_task

    traj = load_demos(file, get_task(task) if task else None, max_mb=max_mb)
    s = summarise(traj)
    if json_out:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    t = Table(title=file)
    t.add_column("")
    t.add_column("")
    for k, v in s.items():
        if k != "meta":
            t.add_row(k, f"{v:.2f}" if isinstance(v, float) else str(v))
    for k, v in s["meta"].items():
        t.add_row(f"meta.{k}", str(v))
    console.print(t)


@app.command()
@user_errors
def tasks(name: Annotated[str | None, typer.Argument(help="Show one task in detail.")] = None) -> None:
    """List built-in tasks, or describe one (schema, actions, kind)."""
    from grace.tasks import get_task, task_names

    if name:
        t = get_task(name)
        console.print(f"[bold]{t.name}[/] ({t.kind}, {t.max_steps} steps)\n{t.description}\n")
        console.print("observation:\n" + t.schema.describe())
        console.print("action: " + t.action.describe())
        return
    tb = Table(title="built-in tasks")
    for col in ("task", "kind", "obs", "action", "jax", "expert"):
        tb.add_column(col)
    for n in task_names():
        t = get_task(n)
        tb.add_row(n, t.kind, str(t.obs_dim), t.action.kind, t.jax_backend or "-", t.expert_doc)
    console.print(tb)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
