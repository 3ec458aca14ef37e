"""`grace train`: PPO on a reward file next to the true-reward PPO baseline, trained the same way.

The reward is validated and traced first (a bad reward trains nothing). Both then run in one
compiled batch (`grace.fitness.ppo.run_ppo` with the reward and `TRUE_REWARD` as two branches;
same algorithm, steps and seeds) inside a jax-profile sandbox worker. Reports the true return and success (mean, std over
seeds), each seed's return and, when some seeds lag far behind the others, what their policies end
up doing differently (`grace.fitness.seed_spread`); writes `summary.json` and `learning_curve.png`
(true return vs env steps) to the output folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from grace.fitness.ppo import TRUE_REWARD, check_rewards, open_pool, ppo_settings, run_ppo
from grace.fitness.seed_spread import describe_lag, lag_report
from grace.program import (
    FITTED_KEYS,
    ProgramError,
    RewardProgram,
    read_reward_file,
    term_alone,
    term_names,
)
from grace.tasks import Task, get_task
from grace.types import PPOJob, PPOResult, TaskRef

WITHIN = 0.05
"""`grace train` calls a reward as good as the true reward when its return is within 5%."""


class RewardCheckError(ValueError):
    """The reward cannot be trained: it fails the contract, does not compile or does not trace
    under JAX. One-line message."""


def _side(res: PPOResult) -> dict[str, Any]:
    if not res.ok:
        return {"ok": False, "error": res.error}
    keys = ("true_return_mean", "true_return_std", "true_returns", "success_rate", "curve",
            "curve_steps", "late_fields")
    out = {"ok": True, **{k: getattr(res, k) for k in keys}}
    if res.success_per_seed is not None:
        out["success_std"] = float(np.std(res.success_per_seed))
    return out


def compare(reward: dict[str, Any], base: dict[str, Any]) -> dict[str, Any]:
    """The reward's PPO against true-reward PPO (two `_side` entries): `ratio` R / R_true (a share
    only where returns are positive: on MountainCar -129 / -121 reads 1.07 for the worse policy),
    `normalised` (R - R_0) / (R_true - R_0), where R_0 is the untrained policies' return (both
    learning curves' first point, at step 0; None without one, or where true-reward PPO gained
    nothing over it), and `within_5pct` (|R - R_true| <= 5% of |R_true|)."""
    b, r = base["true_return_mean"], reward["true_return_mean"]
    out: dict[str, Any] = {"ratio": float(r / b) if b else None, "normalised": None,
                           "within_5pct": bool(abs(r - b) <= WITHIN * max(abs(b), 1e-9))}
    if (gain := _gain(reward, base)) is not None:
        out["normalised"] = float((r - (b - gain)) / gain)
    return out


def _gain(reward: dict[str, Any], base: dict[str, Any]) -> float | None:
    """True-reward PPO's gain over the untrained policies' return R_0 (both learning curves' first
    point, at step 0); None without one, or where true-reward PPO gained nothing over it."""
    starts = [float(np.mean([c[0] for c in side["curve"]])) for side in (reward, base)
              if side.get("curve") and (side.get("curve_steps") or [None])[0] == 0]
    if len(starts) != 2:
        return None
    b, r0 = base["true_return_mean"], float(np.mean(starts))
    return float(b - r0) if abs(b - r0) > 1e-9 * max(abs(b), abs(r0), 1.0) else None


def _lag(side: dict[str, Any], base: dict[str, Any]) -> dict[str, Any] | None:
    """`seed_spread.lag_report` for one trained side, on the scale of true-reward PPO's gain."""
    return lag_report(side["true_returns"], side.get("late_fields") or [], _gain(side, base))


def train_reward(file_or_source: str | Path, task: str | Path | Task, steps: int = 500_000,
                 seeds: int = 2, out_dir: str | Path | None = None, seed: int = 0,
                 algo_kwargs: dict[str, Any] | None = None, n_evals: int = 10,
                 terms: bool = False) -> dict[str, Any]:
    """Train PPO on a reward (file path or source) and on the true reward; compare.

    `task`: a built-in name, a TOML task file, or a Task (e.g. built in Python; its factories
    must be importable module-level functions). `algo_kwargs`: PPO settings over the task's own
    (`grace.fitness.ppo.ppo_settings`; recorded in the summary's `ppo`). The reward is paid
    with its terminal value (`PARAMS["terminal"]`) as a shift and a lump on termination, as
    everywhere (`grace.fitness.returns.applied_reward`). The reward is validated and traced first
    (RewardCheckError, before anything trains); both then train in one compiled batch in a
    jax-profile sandbox worker.

    Returns the summary dict (also written to `out_dir/summary.json` with the plot
    `out_dir/learning_curve.png` when `out_dir` is given): `reward` and `baseline` entries with
    true return mean/std over seeds, per-seed returns, success rate, the learning curve and each
    seed's late-episode field means (`late_fields`); `compare`'s `ratio`, `normalised` and
    `within_5pct`; and `lag` (`seed_spread.lag_report`: the reward's seeds that lag far behind
    its best one and the fields that differ most late in their episodes; None when none lags).
    With `terms`, each of the reward's named terms alone (`grace.program.term_alone`) trains in
    the same batch: `terms` maps each name to its entry (as `reward`'s, with its `normalised`
    and `lag`), to show which term teaches and which makes seeds fail.
    """
    ref = TaskRef.of(task)
    t = ref.resolve()
    path = Path(str(file_or_source))
    is_file = "\n" not in str(file_or_source) and path.is_file()
    try:
        source = read_reward_file(path) if is_file else str(file_or_source)
        RewardProgram(source).validate(t.schema)
    except ProgramError as exc:
        raise RewardCheckError(f"the reward is not a valid reward program: {exc}") from None
    try:
        names = term_names(source) if terms else []
        alone = [term_alone(source, n, t.schema) for n in names]
    except ProgramError as exc:
        raise RewardCheckError(f"--terms: {exc}") from None
    job = PPOJob((source, *alone, TRUE_REWARD), steps, seeds, seed, algo_kwargs, n_evals=n_evals)
    with open_pool(ref) as pool:
        problem = check_rewards(ref, [source], pool=pool)[0]
        if problem is not None:
            raise RewardCheckError(f"the reward cannot be trained: {problem}")
        results = run_ppo(ref, job, pool=pool)
    reward, base = _side(results[0]), _side(results[-1])
    params = RewardProgram(source).params
    summary: dict[str, Any] = {
        "task": t.name, "reward_file": str(path) if is_file else None, "steps": int(steps),
        "seeds": int(seeds), "seed": int(seed), "true_reward": t.true_reward_doc,
        "reward": reward, "baseline": base,
        "ppo": {k: (list(v) if isinstance(v, tuple) else v) for k, v in ppo_settings(t, algo_kwargs).items()},
        **{k: params.get(k) for k in FITTED_KEYS},
        "env_steps_per_run": results[-1].env_steps if results[-1].ok else None,
        "compile_s": results[-1].compile_s if results[-1].ok else None,
        "run_s": results[-1].run_s if results[-1].ok else None,
    }
    if reward["ok"] and base["ok"]:
        summary |= compare(reward, base)
        summary["lag"] = _lag(reward, base)
    if terms:
        summary["terms"] = {}
        for name, res in zip(names, results[1:-1], strict=True):
            side = _side(res)
            if side["ok"] and base["ok"]:
                side |= {"normalised": compare(side, base)["normalised"], "lag": _lag(side, base)}
            summary["terms"][name] = side
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        plot_curves(summary, out / "learning_curve.png")
        summary["files"] = [str(out / "summary.json"), str(out / "learning_curve.png")]
    return summary


def plot_curves(summary: dict[str, Any], path: str | Path) -> None:
    """True return vs env steps, mean +- std over seeds, for the reward and the baseline."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for key, label in (("reward", "PPO on the reward"), ("baseline", "PPO on the true reward")):
        side = summary[key]
        if not side.get("ok"):
            continue
        x, y = np.asarray(side["curve_steps"]), np.asarray(side["curve"], dtype=float)
        mean, std = y.mean(0), y.std(0)
        ax.plot(x, mean, label=label)
        ax.fill_between(x, mean - std, mean + std, alpha=0.2)
    ax.set_xlabel("env steps (per run)")
    ax.set_ylabel("true return")
    ax.set_title(f"{summary['task']}: {summary['seeds']} seeds")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _fmt(side: dict[str, Any], key: str) -> str:
    if not side.get("ok"):
        return "-"
    if key == "return":
        return f"{side['true_return_mean']:.1f} ± {side['true_return_std']:.1f}"
    rate = side.get("success_rate")
    return "-" if rate is None else f"{rate:.2f}"


def _verdict(summary: dict[str, Any]) -> str:
    """One line: the normalised score where the curves start at step 0, the ratio where returns are
    positive, and whether the two are within 5%."""
    parts = []
    if summary.get("normalised") is not None:
        parts.append(f"normalised {summary['normalised']:.3f} (0 = the untrained policy's return, 1 = true-reward PPO's)")
    if summary.get("ratio") is not None and summary["baseline"]["true_return_mean"] > 0:
        parts.append(f"ratio {summary['ratio']:.3f}")
    return "; ".join([*parts, f"within 5%: {summary['within_5pct']}"])


def parse_ppo_settings(items: list[str], task: Task) -> dict[str, Any]:
    """`--ppo KEY=VALUE` items as PPO settings (values read as TOML: 0.9, true, "symlog", [64, 64]);
    ValueError (one line) on a malformed item or an unknown key."""
    import tomllib

    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--ppo takes KEY=VALUE, got {item!r}")
        try:
            value = tomllib.loads(f"v = {text.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            value = text.strip()
        out[key.strip()] = value
    ppo_settings(task, out)  # names an unknown key
    return out


def train_command(file: str, task: str, steps: int, seeds: int, out: str, json_out: bool,
                  ppo: list[str] | None = None, terms: bool = False) -> int:
    """The body of `grace train`: returns 0, or 2 with one line on bad input / failed reward."""
    try:
        t = get_task(task)
        settings = parse_ppo_settings(ppo or [], t)
    except ValueError as exc:
        print(f"error: {exc}")
        return 2
    if not Path(file).is_file():
        print(f"error: reward file not found: {file}")
        return 2
    if steps <= 0 or seeds <= 0:
        print("error: --steps and --seeds must be positive")
        return 2
    try:
        summary = train_reward(file, t, steps=steps, seeds=seeds, out_dir=out, algo_kwargs=settings, terms=terms)
    except RewardCheckError as exc:
        print(f"error: {exc}")
        return 2
    except Exception as exc:  # noqa: BLE001 - one line for the user
        print(f"error: training failed: {type(exc).__name__}: {exc}")
        return 2
    if json_out:
        print(json.dumps(summary, indent=2))
    else:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"grace train: {t.name}, {steps} steps x {seeds} seeds")
        for col in ("policy", "true return (mean ± std)", "success"):
            table.add_column(col)
        table.add_row(f"PPO on {Path(file).name}", _fmt(summary["reward"], "return"),
                      _fmt(summary["reward"], "success"))
        for name, side in summary.get("terms", {}).items():
            table.add_row(f"  its term {name} alone", _fmt(side, "return"), _fmt(side, "success"))
        table.add_row("PPO on the true reward", _fmt(summary["baseline"], "return"),
                      _fmt(summary["baseline"], "success"))
        console = Console()
        console.print(table)
        if not summary["reward"]["ok"]:
            console.print(f"reward failed: {summary['reward']['error']}")
        elif "within_5pct" in summary:
            console.print(_verdict(summary))
            sides = [("", summary["reward"], summary.get("lag")),
                     *((f"term {n} alone: ", s, s.get("lag")) for n, s in summary.get("terms", {}).items())]
            for label, side, lag in sides:
                if not side.get("ok"):
                    console.print(f"{label}failed: {side.get('error')}", markup=False)
                    continue
                if seeds > 1:
                    console.print(f"{label}per seed: " + ", ".join(f"{v:.4g}" for v in side["true_returns"]), markup=False)
                if lag:
                    console.print(label + describe_lag(lag, seeds), markup=False)
        console.print(f"wrote {out}/summary.json and {out}/learning_curve.png")
    return 0 if summary["reward"]["ok"] else 1
