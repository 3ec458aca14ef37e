"""Rewards that teach: PPO on grace's winners vs true-reward PPO, with an ablation, in one run.

For each task, grace evolves a reward from the committed demos with its defaults (offline operator,
terminal value, episode-return margin, PPO in the loop); on the ablation tasks it evolves again with
one part switched off at a time. Then ONE compiled PPO batch trains, with the same steps and seeds:

    grace            the run's winner (chosen by PPO in the loop)
    no PPO select    the same run's best by offline fitness (what the winner would be without it)
    no shaping       the winner without the potential the final shaping stage gave it (if it got one)
    no payment       the winner as the payment stage's floor candidate, when the stage chose the shift
    no terminal      the winner of a run with `fit.terminal = false`
    no returns       the winner of a run with `fit.returns = false`
    true reward      the env's own reward

and every policy is scored on the true (or fixed-horizon) return, normalised as
(R - R_random) / (R_expert - R_random) with quality.py's references. Ratios are to true-reward PPO
from the same batch. Each stage caches its JSON under benchmarks/results/teach/ (re-runs resume;
--force redoes); the table is rebuilt from the cache: benchmarks/results/teach.md + teach.json.

    python benchmarks/teach.py --tasks cartpole,acrobot --seeds 5
    python benchmarks/teach.py --name fewdemos --tasks pendulum@1,pendulum@2 --baselines gail

A row `TASK@N` evolves on the first N committed demo episodes (and GAIL gets the same N): the
demos-count sweep of "Few demos" (issue 12). `--demos-dir demos/sb3` runs it on demos grace did not
make (SB3 experts in imitation's layout, benchmarks/sb3_experts.py).
    python benchmarks/teach.py --table-only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import normalise, references, run_imitation  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NAME = "teach"
CACHE = RESULTS / NAME
RUNS = ROOT / "runs" / NAME
DEMOS = ROOT / "demos"
WAVE1 = RESULTS / "quality"
TASKS = ["cartpole", "acrobot", "mountaincar", "cartpole_fixed", "acrobot_fixed", "mountaincar_fixed", "pendulum",
         "inverted_pendulum"]
ABLATE = ["cartpole", "acrobot", "mountaincar"]
VARIANTS = {"full": {}, "no_terminal": {"fit.terminal": False}, "no_returns": {"fit.returns": False}}
BRANCHES = ("grace", "no_ppo_select", "no_terms", "no_shaping", "no_payment", "no_terminal", "no_returns", "true_reward")


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float))


def split_row(row: str) -> tuple[str, int | None]:
    """`pendulum@2` -> ("pendulum", 2): the task and how many of its demo episodes (None = all)."""
    task, _, n = row.partition("@")
    return task, int(n) if n else None


def demos_file(row: str) -> Path:
    """The task's demos (committed, or `--demos-dir`'s), or the first N of their episodes (saved under runs/)."""
    task, n = split_row(row)
    path = DEMOS / f"{task}.npz"
    if n is None:
        return path
    from grace.data.trajectories import load_demos

    return load_demos(path).select(list(range(n))).save(RUNS / "demos" / f"{task}-n{n}.npz")


def evolve_variant(row: str, variant: str, args: argparse.Namespace) -> dict[str, Any]:
    path = CACHE / row / f"evolve-{variant}.json"
    if (cached := _load(path)) and not args.force:
        return cached
    from grace.api import evolve
    from grace.config import EvolveConfig
    from grace.search.archive import Archive

    task, n_demos = split_row(row)
    run = RUNS / f"{row.replace('@', '-n')}-{variant}"
    cfg = EvolveConfig(task=task, demos=str(demos_file(row)), out=str(run), seed=args.seed,
                       report=False).override({"search.generations": args.generations, "sandbox.workers": args.workers,
                                               **VARIANTS[variant]})
    for assignment in args.set:
        cfg = cfg.set(assignment)
    print(f"[teach] evolve {row} {variant}", flush=True)
    t0 = time.time()
    res = evolve(cfg, overwrite=True, progress=False)
    wall = time.time() - t0
    assert res.best is not None, f"{task} {variant}: no program"
    archive = Archive(run / "archive.sqlite", create=False)
    offline_best = archive.top(1)[0]
    selection = archive.get_meta(f"ppo_select_r{cfg.search.rounds - 1}")
    payment = archive.get_meta("payment_final")
    kept = (selection or {}).get("terms") or {}
    # the choice the term stage started from, when it kept a term instead (search/ppo_terms.py)
    before_terms = archive.program(kept["from"]).best_source if kept.get("kept") is not None else None
    archive.close()
    out = {"task": task, "n_demos": n_demos, "variant": variant, "overrides": VARIANTS[variant], "set": args.set, "wall_s": wall,
           "generations": args.generations, "evaluated": res.stats.evaluated,
           # best_reward.py: the winner as grace hands it over (with the final stage's potential, if any)
           "winner": {"program_id": res.best.program_id, "source": Path(res.best_path).read_text() if res.best_path
                      else res.best.best_source, "fitness": res.best.fitness,
                      "heldout": res.best.heldout, "size": res.best.size, "metrics": res.best.metrics,
                      # the same winner as the archive holds it: before the final shaping stage
                      "unshaped": res.best.best_source},
           "offline_best": {"program_id": offline_best.program_id, "source": offline_best.best_source,
                            "fitness": offline_best.fitness, "size": offline_best.size},
           "selection": selection, "payment": payment, "before_terms": before_terms}
    _dump(path, out)
    return out


def unshaped_winner(full: dict[str, Any]) -> str | None:
    """The winner without the final shaping stage's potential, paid as the winner is (without its
    floor when the payment stage chose the shift); None when the winner has no potential. (The
    archive's copy, "unshaped", predates both final stages and its docstring differs: compared as
    text, a winner without a potential had a *no shaping* branch of itself, and a shift-paid one a
    *no shaping* branch that repeated *no payment*, as quality17's first table did on acrobot.)"""
    from grace.program import RewardProgram
    from grace.search.payment import without_floor

    unshaped = full["winner"].get("unshaped")
    if not unshaped or not RewardProgram(full["winner"]["source"]).has_potential:
        return None
    if (full.get("payment") or {}).get("kept") == "shift":
        unshaped = without_floor(RewardProgram(unshaped)).source
    return unshaped


def floor_paid(full: dict[str, Any]) -> str | None:
    """The payment stage's floor candidate, when the stage chose the shift: the winner with its
    floor back and its potential at the scale the floor kept (the shift's was scaled by
    `living_cost / spread`); None when the stage kept the floor. (quality17-21's *no payment* put
    the floor back and kept the shift's scale, a reward the stage never compared.)"""
    from grace.program import FLOOR_KEY, RewardProgram
    from grace.search.payment import SCALE_KEY

    pay = full.get("payment") or {}
    if pay.get("kept") != "shift" or pay.get("program") is None:
        return None
    final = RewardProgram(full["winner"]["source"])
    params = final.params | {FLOOR_KEY: pay["floor"]}
    sizing = pay.get("shift_sizing") or {}
    if SCALE_KEY in params and sizing.get("factor", 1.0) > 1.0:
        # records before "floor_scale": the file's 4 significant digits of scale / factor
        params[SCALE_KEY] = float(sizing.get("floor_scale") or f"{params[SCALE_KEY] / sizing['factor']:.4g}")
    return final.with_params(params).source


def row_sources(evolved: dict[str, dict[str, Any]]) -> dict[str, str]:
    """A row's reward columns but the true reward, by branch name (BRANCHES), from its evolutions."""
    full = evolved["full"]
    sources = {"grace": full["winner"]["source"], "no_ppo_select": full["offline_best"]["source"]}
    if full.get("before_terms"):
        sources["no_terms"] = full["before_terms"]
    if (unshaped := unshaped_winner(full)) is not None:
        sources["no_shaping"] = unshaped
    if (floor := floor_paid(full)) is not None:
        sources["no_payment"] = floor
    for v in ("no_terminal", "no_returns"):
        if v in evolved:
            sources[v] = evolved[v]["winner"]["source"]
    return sources


def _steps(task: str, args: argparse.Namespace) -> int:
    return (args.brax_steps or args.steps) if task == "inverted_pendulum" else args.steps


def train(row: str, evolved: dict[str, dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    path = CACHE / row / "train.json"
    steps = _steps(split_row(row)[0], args)
    if (cached := _load(path)) and cached.get("steps") == steps and not args.force:  # a cache at other steps is stale
        return cached
    from grace.fitness.ppo import TRUE_REWARD, ppo_settings, run_ppo
    from grace.tasks import get_task
    from grace.types import PPOJob

    task = split_row(row)[0]
    sources = row_sources(evolved) | {"true_reward": TRUE_REWARD}
    names = list(sources)
    print(f"[teach] train {task}: {', '.join(names)} x {args.seeds} seeds x {steps} steps", flush=True)
    t0 = time.time()
    results = run_ppo(task, PPOJob(tuple(sources[n] for n in names), steps, args.seeds, args.seed), timeout=7200)
    out: dict[str, Any] = {"task": task, "steps": steps, "seeds": args.seeds, "wall_s": time.time() - t0,
                           "ppo": {k: (list(v) if isinstance(v, tuple) else v)
                                   for k, v in ppo_settings(get_task(task)).items() if k != "agent_kwargs"},
                           "methods": {}}
    for n, res in zip(names, results, strict=True):
        out["methods"][n] = ({"ok": True, "returns": res.true_returns, "success": res.success_rate,
                              "env_steps": res.env_steps} if res.ok else {"ok": False, "error": res.error})
    _dump(path, out)
    return out


def baseline(row: str, algo: str, args: argparse.Namespace) -> dict[str, Any] | None:
    """GAIL / AIRL (imitation, SB3 PPO) on the same demos with the same env steps and seeds, run in
    benchmarks/.venv-imitation (`make benchmarks/.venv-imitation/.installed`) by quality.py's script."""
    path = CACHE / row / f"{algo}.json"
    task, n_demos = split_row(row)
    if (cached := _load(path)) and "true_return_mean" in cached and not args.force:
        return cached
    steps = _steps(task, args)
    print(f"[teach] {algo} {row}: {args.seeds} seeds x {steps} steps", flush=True)
    return run_imitation(task, algo, path, steps, args.seeds, n_demos or 0, demos=DEMOS / f"{task}.npz")


def _baseline_norm(row: str, algo: str, ref: dict[str, Any]) -> tuple[list[float] | None, str]:
    """Per-seed normalised returns of this run's baseline, else the first wave's (3 seeds, marked)."""
    task, n = split_row(row)
    wave1 = WAVE1 / "baselines" / (f"{task}-{algo}-n{n}.json" if n else f"{task}-{algo}.json")
    for path, mark in ((CACHE / row / f"{algo}.json", ""), (wave1, "¹")):
        if (b := _load(path)) and "runs" in b:
            return [normalise(r["true_return"], ref) for r in b["runs"]], mark
    return None, ""


# -- table ------------------------------------------------------------------------------------------
def _norm(m: dict[str, Any] | None, ref: dict[str, Any]) -> list[float] | None:
    return [normalise(r, ref) for r in m["returns"]] if m and m.get("ok") else None


def _ms(x: list[float] | None) -> str:
    return "-" if x is None else f"{np.mean(x):.2f} ± {np.std(x):.2f}"


def _ratio(x: list[float] | None, base: list[float] | None) -> float | None:
    if x is None or base is None or abs(np.mean(base)) < 1e-9:
        return None
    return float(np.mean(x) / np.mean(base))


def _vs(x: list[float] | None, base: list[float] | None) -> float | None:
    """grace / a baseline, where the baseline's mean normalised return is at least 0.05 (else None:
    a ratio to about nothing, or to a negative return, reads as nothing)."""
    return _ratio(x, base) if base is not None and np.mean(base) >= 0.05 else None


def _r(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _wave1(task: str) -> tuple[float | None, int | None]:
    """First-wave (committed quality.json) grace / PPO ratio and the winner's size."""
    q = _load(RESULTS / "quality.json")
    ratio = None
    for r in (q or {}).get("rows", []):
        if r.get("task") == task:
            ratio = (r.get("methods", {}).get("grace") or {}).get("ratio_to_ppo")
    size = None
    best = WAVE1 / task / "best_reward.py"
    if best.exists():
        from grace.program import RewardProgram

        size = RewardProgram(best.read_text()).size
    return ratio, size


def _demos_flag() -> str:
    return "" if DEMOS == ROOT / "demos" else f" --demos-dir {DEMOS.relative_to(ROOT) if DEMOS.is_relative_to(ROOT) else DEMOS}"


def write_table(tasks: list[str], args: argparse.Namespace) -> None:
    rows, codes = [], []
    brax = f" ({args.brax_steps:,} on Brax)" if args.brax_steps and args.brax_steps != args.steps else " (Brax included)"
    lines = [
        "# Rewards that teach: grace's winners vs true-reward PPO, with an ablation", "",
        f"Produced by `python benchmarks/teach.py --name {NAME}{_demos_flag()}` (offline operator, {args.generations} generations x 2 islands x 16, "
        f"seed {args.seed}; PPO: {args.steps:,} env steps per run{brax}, {args.seeds} seeds, "
        "every column of a row trained in ONE compiled batch with the task's PPO settings). Normalised return = "
        "(R - R_random) / (R_expert - R_random) of the per-seed mean true return (quality.py's references); "
        "mean ± std over seeds. Ratios are to true-reward PPO of the same batch. Ablations (one part off at a "
        "time; a value in () is a normalised return, where the ratio is undefined because true-reward PPO scores 0): "
        "*no PPO select* = the same run's best by offline fitness; *no terms* = PPO in the loop's choice before the "
        "term stage kept one of its terms alone (search/ppo_terms.py; as the archive holds it, without the final "
        "stages' potential or payment; - when the stage kept the choice); *no shaping* = the winner without the "
        "potential of the final shaping stage (- when it got none); *no payment* = the winner paid with its floor, "
        "where the final payment stage chose to pay its goal as a shift (- when it kept the floor); *no terminal* / *no returns* = a "
        "separate run with `fit.terminal = false` / `fit.returns = false` (ablation tasks only). "
        "GAIL / AIRL: imitation's GAIL / AIRL (SB3 PPO) on the same demos, same env steps, this run's seeds; ¹ = not "
        "re-run here, the first wave's (quality.md, 3 seeds); grace / GAIL and grace / AIRL are - where the baseline's mean "
        "is under 0.05. wave 1 = the first wave's grace / PPO ratio "
        "(benchmarks/results/quality.md, 3 seeds).", "",
        "| task | true-reward PPO | grace | grace / PPO | no PPO select / PPO | no terms / PPO | no shaping / PPO | no payment / PPO "
        "| no terminal / PPO "
        "| no returns / PPO | GAIL | grace / GAIL | AIRL | grace / AIRL | wave 1 | success grace / PPO "
        "| winner size (wave 1) | evolve s (PPO select s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row_name in tasks:
        task, n_demos = split_row(row_name)
        label = row_name if n_demos is None else f"{task}, {n_demos} demo{'s' if n_demos > 1 else ''}"
        ref = _load(WAVE1 / task / "reference.json")
        tr = _load(CACHE / row_name / "train.json")
        full = _load(CACHE / row_name / "evolve-full.json")
        if ref is None or tr is None or full is None:
            lines.append(f"| {label} | " + " | ".join(["not run (time)"] * 17) + " |")
            continue
        m = dict(tr["methods"])
        if unshaped_winner(full) is None:  # a cached batch may hold a mislabelled no-shaping branch
            m.pop("no_shaping", None)
        norm = {k: _norm(m.get(k), ref) for k in BRANCHES}
        base = norm["true_reward"]
        w1_ratio, w1_size = _wave1(task) if n_demos is None else (None, None)
        gail, gmark = _baseline_norm(row_name, "gail", ref)
        airl, amark = _baseline_norm(row_name, "airl", ref)
        succ = " / ".join("-" if not (m.get(k) or {}).get("ok") or m[k]["success"] is None else f"{m[k]['success']:.2f}"
                          for k in ("grace", "true_reward"))
        sel = full.get("selection") or {}
        row = {"task": task, "n_demos": n_demos, "norm": norm, "ratio": {k: _ratio(norm[k], base) for k in BRANCHES[:-1]},
               "gail": gail, "gail_from_wave1": bool(gmark), "airl": airl, "airl_from_wave1": bool(amark), "wave1_ratio": w1_ratio, "size": full["winner"]["size"], "wave1_size": w1_size}
        rows.append(row)
        rt = row["ratio"]

        def _cell(k: str, rt: dict[str, float | None] = rt, norm: dict[str, list[float] | None] = norm) -> str:
            """The ratio to true-reward PPO; where that is undefined (PPO at 0), the normalised return in ()."""
            return _r(rt[k]) if rt[k] is not None or norm[k] is None else f"({np.mean(norm[k]):.2f})"

        lines.append(
            f"| {label} | {_ms(base)} | {_ms(norm['grace'])} | **{_r(rt['grace'])}** | {_cell('no_ppo_select')} | {_cell('no_terms')} | "
            f"{_cell('no_shaping')} | {_cell('no_payment')} | {_cell('no_terminal')} | {_cell('no_returns')} | {_ms(gail)}{gmark} | "
            f"{_r(_vs(norm['grace'], gail))} | {_ms(airl)}{amark} | {_r(_vs(norm['grace'], airl))} | "
            f"{_r(w1_ratio)} | {succ} | "
            f"{full['winner']['size']} ({w1_size if w1_size is not None else '-'}) | "
            f"{full['wall_s']:.0f} ({sel.get('seconds', 0):.0f}) |")
        same = full["winner"]["program_id"] == full["offline_best"]["program_id"]
        codes += [f"### {label}: the winner ({full['winner']['program_id']}, offline fitness "
                  f"{full['winner']['fitness']:.3f}{'; also the offline best' if same else ''})", "",
                  "```python", full["winner"]["source"].strip(), "```", ""]
    lines += ["", "## The winning rewards", ""] + codes
    notes = CACHE / "notes.md"
    if notes.exists():
        lines += [notes.read_text().strip()]
    (RESULTS / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    _dump(RESULTS / f"{NAME}.json", {"steps": args.steps, "seeds": args.seeds, "generations": args.generations,
                                   "rows": rows})
    print("\n".join(lines[:len(tasks) + 8]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--ablate", default=",".join(ABLATE), help="tasks that also get the no-terminal / no-returns runs")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--brax-steps", type=int, default=0,
                    help="env steps per PPO run on the Brax task; 0 = --steps, the budget PPO in the loop selects at "
                         "(ppo.steps) and `grace train` trains at (quality1-18 used 100,000)")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every evolution (as `grace evolve --set`)")
    ap.add_argument("--baselines", default="", help="comma list of gail,airl to run beside (needs the imitation venv)")
    ap.add_argument("--demos-dir", default="", help="read TASK.npz from this folder instead of demos/ (e.g. demos/sb3: "
                    "demos grace did not make, benchmarks/sb3_experts.py), for grace and the baselines alike")
    ap.add_argument("--name", default="teach", help="results name: benchmarks/results/NAME.md and NAME/ (cache)")
    args = ap.parse_args()
    global CACHE, RUNS, NAME, DEMOS
    CACHE, RUNS, NAME = RESULTS / args.name, ROOT / "runs" / args.name, args.name
    DEMOS = Path(args.demos_dir).resolve() if args.demos_dir else DEMOS
    tasks = [t for t in args.tasks.split(",") if t]
    ablate = set(args.ablate.split(","))
    if not args.table_only:
        for t in tasks:
            references(split_row(t)[0])
            evolved = {v: evolve_variant(t, v, args) for v in VARIANTS if v == "full" or t in ablate}
            train(t, evolved, args)
            for algo in [a for a in args.baselines.split(",") if a]:
                baseline(t, algo, args)
            write_table(tasks, args)
    write_table(tasks, args)
    prefix = f"{ROOT}/"
    for p in CACHE.rglob("*.json"):
        if prefix in (text := p.read_text()):
            p.write_text(text.replace(prefix, ""))


if __name__ == "__main__":
    sys.exit(main())
