"""Reward-quality benchmark: PPO on grace's recovered rewards vs true-reward PPO, GAIL and AIRL.

For each task: evolve a reward from the committed demos with a fixed budget (built-in offline
operator; the LLM proposer with --llm-base-url), train PPO (rejax) on the best reward with
`grace.train.train_reward` (which trains true-reward PPO with the same steps and seeds in the same
compiled batch), and put the normalised return

    (R - R_random) / (R_expert - R_random)

and success (mean ± std over seeds) next to GAIL and AIRL (imitation 1.0.1, SB3 PPO, CPU torch)
trained on the same demo files with the same env-step budget, plus SB3 true-reward PPO as their
own reference. The baselines run in the separate venv benchmarks/.venv-imitation (imitation pins
gymnasium 0.29) through benchmarks/baselines_imitation.py.

R_expert is the demos' mean return; for tasks whose demos were collected on another env than the
RL env (the fixed-horizon goal tasks: demos on the terminating env) the scripted expert is rolled
on the RL env instead. R_random: uniform-random policy, 32 episodes on the RL env.

Every stage caches its JSON under benchmarks/results/quality/ (a re-run resumes; --force redoes),
and the table is rebuilt from the cache at the end: benchmarks/results/quality.md + quality.json.

    python benchmarks/quality.py          # all tasks (Brax: 100k steps), 200k steps, demos sweep
    python benchmarks/quality.py --tasks mountaincar_fixed,pendulum --rounds 2 --no-baselines
    python benchmarks/quality.py --table-only            # rebuild the markdown from the cache
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CACHE = RESULTS / "quality"
RUNS = ROOT / "runs" / "quality"
IMITATION_PY = ROOT / "benchmarks" / ".venv-imitation" / "bin" / "python"
HEADLINE = ["pendulum", "cartpole_fixed", "mountaincar_fixed", "acrobot_fixed"]
ORIGINALS = ["cartpole", "mountaincar", "acrobot"]
BRAX = ["inverted_pendulum"]
BASELINE_TASKS = set(HEADLINE + ORIGINALS)
ALGOS = ("ppo", "gail", "airl")
OUT_NAME = "quality"
# PPO settings per task live in the task definitions (`Task.ppo`, e.g. pendulum's rl-zoo settings)
# and apply identically to PPO on grace's reward and on the true reward.


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float))


def _key(task: str, n_demos: int, rounds: int = 1) -> str:
    key = task if n_demos == 8 else f"{task}-n{n_demos}"
    return key if rounds == 1 else f"{key}-r{rounds}"


# -- references -------------------------------------------------------------------------------
def references(task_name: str, force: bool = False) -> dict[str, Any]:
    path = CACHE / task_name / "reference.json"
    if (cached := _load(path)) and not force:
        return cached
    from grace.data.rollout import random_policy, rollout
    from grace.data.trajectories import load_demos
    from grace.tasks import get_task

    task = get_task(task_name)
    demos = load_demos(ROOT / "demos" / f"{task_name}.npz", task)
    demo_mean = float(np.mean(demos.returns()))
    rand = rollout(task, random_policy(task), 32, seed=1, env=task.make_env())
    out: dict[str, Any] = {"task": task_name, "demos_return_mean": demo_mean,
                           "random_return_mean": float(np.mean(rand.returns())),
                           "random_return_std": float(np.std(rand.returns())), "random_episodes": 32}
    if task.demo_env is not None:  # demos come from another env: roll the expert on the RL env
        exp = rollout(task, task.expert(), 8, seed=0, env=task.make_env())
        out.update(expert_return_mean=float(np.mean(exp.returns())),
                   expert_source="scripted expert, 8 episodes on the RL (fixed-horizon) env")
    else:
        out.update(expert_return_mean=demo_mean, expert_source="committed demos' mean return")
    _dump(path, out)
    return out


def normalise(ret: float, ref: dict[str, Any]) -> float:
    return (ret - ref["random_return_mean"]) / (ref["expert_return_mean"] - ref["random_return_mean"])


# -- grace: evolve + train --------------------------------------------------------------------
def evolve_task(task_name: str, n_demos: int, args: argparse.Namespace) -> dict[str, Any]:
    key = _key(task_name, n_demos, args.rounds)
    path = CACHE / key / "evolve.json"
    if (cached := _load(path)) and not args.force:
        return cached
    from grace.api import evolve
    from grace.config import EvolveConfig, LLMConfig
    from grace.data.trajectories import load_demos
    from grace.search.archive import Archive

    demos_path = ROOT / "demos" / f"{task_name}.npz"
    if n_demos != 8:
        sub = load_demos(demos_path).select(list(range(n_demos)))
        demos_path = sub.save(RUNS / "demos" / f"{task_name}-n{n_demos}.npz")
    llm = LLMConfig(base_url=args.llm_base_url, model=args.llm_model) if args.llm_base_url else LLMConfig()
    cfg = EvolveConfig(task=task_name, demos=str(demos_path), out=str(RUNS / key), seed=args.seed, report=False,
                       llm=llm).override({"proposer.kind": "llm" if args.llm_base_url else "offline",
                                          "search.generations": args.generations, "search.rounds": args.rounds,
                                          "sandbox.workers": args.workers})
    t0 = time.time()
    res = evolve(cfg, overwrite=True, progress=False)
    wall = time.time() - t0
    archive = Archive(RUNS / key / "archive.sqlite")
    proposals = len(archive.programs())
    calls = archive.call_stats()
    negatives = archive.negatives()
    archive.close()
    best = res.best
    assert best is not None and res.best_path is not None, f"{key}: evolution produced no program"
    (CACHE / key).mkdir(parents=True, exist_ok=True)
    shutil.copy(res.best_path, CACHE / key / "best_reward.py")
    m = best.metrics
    out = {
        "task": task_name, "n_demos": n_demos, "proposer": cfg.proposer.kind, "generations": cfg.search.generations,
        "population": cfg.search.population, "islands": cfg.search.islands, "rounds": cfg.search.rounds,
        "seed": cfg.seed,
        "wall_s": wall, "proposals": proposals,
        "llm_calls": int(sum(c["calls"] for c in calls)) if calls else None,
        "evaluated": res.stats.evaluated, "duplicates": res.stats.duplicates, "invalid": res.stats.invalid,
        "fitness_train": m.get("fitness_train", best.fitness), "fitness_heldout": m.get("fitness_heldout"),
        "accuracy_train": m.get("accuracy_train"), "accuracy_heldout": m.get("accuracy_heldout"),
        "negatives_env_steps": int(sum(n["env_steps"] or 0 for n in negatives)),
        "active_negative_env_steps": int(sum(n["env_steps"] or 0 for n in negatives if n["source"] != "random")),
        "best_program": best.program_id, "best_reward": str((CACHE / key / "best_reward.py").relative_to(ROOT)),
    }
    _dump(path, out)
    return out


def train_task(task_name: str, n_demos: int, args: argparse.Namespace) -> dict[str, Any]:
    key = _key(task_name, n_demos, args.rounds)
    path = CACHE / key / "train.json"
    if (cached := _load(path)) and not args.force:
        return cached
    from grace.train import train_reward

    t0 = time.time()
    steps = args.brax_steps if task_name in BRAX else args.steps
    summary = train_reward(CACHE / key / "best_reward.py", task_name, steps=steps, seeds=args.seeds,
                           out_dir=RUNS / key / "train", seed=args.seed)
    out = {"task": task_name, "n_demos": n_demos, "steps": steps, "seeds": args.seeds,
           "ppo": summary.get("ppo"), "terminal": summary.get("terminal"),
           "wall_s": time.time() - t0, "env_steps_per_run": summary.get("env_steps_per_run"),
           "ratio_raw": summary.get("ratio")}
    for side in ("reward", "baseline"):
        s = summary[side]
        out[side] = {k: s.get(k) for k in ("ok", "error", "true_return_mean", "true_return_std",
                                            "true_returns", "success_rate", "success_std")}
    _dump(path, out)
    return out


# -- baselines (separate venv) ---------------------------------------------------------------
def baseline(task_name: str, algo: str, n_demos: int, args: argparse.Namespace) -> dict[str, Any] | None:
    suffix = "" if n_demos == 8 else f"-n{n_demos}"
    path = CACHE / "baselines" / f"{task_name}-{algo}{suffix}.json"
    cached = _load(path)
    if cached and "true_return_mean" in cached and not args.force:
        return cached
    if task_name not in BASELINE_TASKS or not IMITATION_PY.exists() or args.no_baselines:
        return cached
    print(f"[quality] baseline {task_name} {algo} n_demos={n_demos}", flush=True)
    return run_imitation(task_name, algo, path, args.steps, args.seeds, n_demos if n_demos != 8 else 0)


def run_imitation(task: str, algo: str, out: Path, steps: int, seeds: int, n_demos: int = 0,
                  demos: Path | None = None) -> dict[str, Any] | None:
    """Run benchmarks/baselines_imitation.py in the imitation venv (its stdout dropped; it resumes
    per seed from `out`): the JSON it wrote at `out`, or None if the venv is missing or it wrote none.
    `n_demos` 0 = every episode of `demos` (default demos/<task>.npz)."""
    if not IMITATION_PY.exists():
        print(f"[baselines] {algo} {task} skipped: {IMITATION_PY} missing "
              "(make benchmarks/.venv-imitation/.installed)", flush=True)
        return None
    cmd = [str(IMITATION_PY), str(ROOT / "benchmarks" / "baselines_imitation.py"), "--task", task, "--algo", algo,
           "--steps", str(steps), "--seeds", str(seeds), "--n-demos", str(n_demos), "--out", str(out)]
    if demos is not None:
        cmd += ["--demos", str(demos)]
    out.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(cmd, check=False, stdout=subprocess.DEVNULL)
    return _load(out)


# -- table ------------------------------------------------------------------------------------
def _ms(vals: list[float] | None) -> tuple[float, float] | None:
    if not vals:
        return None
    return float(np.mean(vals)), float(np.std(vals))


def _fmt(ms: tuple[float, float] | None, digits: int = 2) -> str:
    return "-" if ms is None else f"{ms[0]:.{digits}f} ± {ms[1]:.{digits}f}"


def seed_cells(vals: list[float]) -> str:
    """Two table cells: mean ± std over seeds | each seed's value (2 decimals)."""
    return f"{_fmt(_ms(vals))} | {', '.join(f'{x:.2f}' for x in vals)}"


def row(task_name: str, n_demos: int = 8, rounds: int = 1) -> dict[str, Any]:
    key = _key(task_name, n_demos, rounds)
    ref = _load(CACHE / task_name / "reference.json")
    evo = _load(CACHE / key / "evolve.json")
    tr = _load(CACHE / key / "train.json")
    out: dict[str, Any] = {"task": task_name, "n_demos": n_demos, "rounds": rounds, "reference": ref,
                           "evolve": evo}
    if ref is None:
        return out
    methods: dict[str, Any] = {}
    if tr is not None:
        for name, side in (("grace", "reward"), ("ppo_rejax", "baseline")):
            s = tr[side]
            if s.get("ok"):
                methods[name] = {"norm": [normalise(r, ref) for r in s["true_returns"]],
                                 "return": s["true_returns"], "success": s["success_rate"],
                                 "success_std": s.get("success_std"), "steps": tr["steps"]}
            else:
                methods[name] = {"error": s.get("error")}
    suffix = "" if n_demos == 8 else f"-n{n_demos}"
    for algo in ALGOS:
        b = _load(CACHE / "baselines" / f"{task_name}-{algo}{suffix}.json")
        if b and b.get("runs"):
            rets = [r["true_return"] for r in b["runs"]]
            succ = [r["success"] for r in b["runs"]]
            methods[f"{algo}_sb3" if algo == "ppo" else algo] = {
                "norm": [normalise(r, ref) for r in rets], "return": rets, "success": float(np.mean(succ)),
                "success_std": float(np.std(succ)), "steps": b["steps"], "seeds_done": len(rets),
                "train_s": float(np.mean([r["train_s"] for r in b["runs"]]))}
    if rounds != 1:  # baselines belong to the main rows
        methods = {k: v for k, v in methods.items() if k in ("grace", "ppo_rejax")}
    for name, ref_name in (("grace", "ppo_rejax"), ("gail", "ppo_sb3"), ("airl", "ppo_sb3")):
        m, base = methods.get(name), methods.get(ref_name)
        if m and base and "norm" in m and "norm" in base and abs(np.mean(base["norm"])) > 1e-9:
            m["ratio_to_ppo"] = float(np.mean(m["norm"]) / np.mean(base["norm"]))
    out["methods"] = methods
    return out


def _cell(m: dict[str, Any] | None, what: str, missing: str = "not run (time)") -> str:
    if m is None:
        return missing
    if "error" in m:
        return "failed"
    if what == "norm":
        s = _fmt(_ms(m["norm"]))
        n = m.get("seeds_done", 3)
        return s if n >= 3 else f"{s} ({n} seed{'s' if n > 1 else ''})"
    if what == "success":
        return "-" if m["success"] is None else f"{m['success']:.2f} ± {m.get('success_std') or 0:.2f}"
    r = m.get("ratio_to_ppo")
    return "-" if r is None else f"{r:.2f}"


def _acc(evo: dict[str, Any] | None) -> str:
    if evo is None:
        return "-"
    held = evo["accuracy_heldout"]
    held_s = "-" if held is None or not np.isfinite(held) else f"{held:.3f}"
    return f"{evo['accuracy_train']:.3f} / {held_s}"


def write_table(tasks: list[str], sweep: list[tuple[str, int]], args: argparse.Namespace) -> None:
    rows = [row(t) for t in tasks]
    rounds_rows = [row(t, 8, int(d.name.rsplit("-r", 1)[1])) for t in tasks
                   for d in sorted(CACHE.glob(f"{t}-r*")) if (d / "train.json").exists()]
    sweep_rows = [row(t, n) for t, n in sweep]
    lines = [
        "# Reward quality: PPO on grace's recovered rewards vs true reward, GAIL and AIRL", "",
        f"Produced by `python benchmarks/quality.py` ({args.steps:,} env steps per policy, {args.seeds} seeds; "
        f"offline operator, {args.generations} generations x 2 islands x 16, {args.rounds} round(s)). "
        "Normalised return = (R - R_random) / (R_expert - R_random), mean ± std over seeds of the "
        "per-seed mean true return; success likewise. grace and PPO (rejax) train in one compiled "
        "batch; GAIL, AIRL (imitation 1.0.1) and PPO (SB3) run in benchmarks/.venv-imitation on the "
        "same demo files. Ratios are normalised return / that of true-reward PPO from the same "
        "library (grace vs rejax PPO; GAIL and AIRL vs SB3 PPO). Budgets, and what we believe limits "
        "each row, are below the tables; the method is in benchmarks/README.md.", "",
        "| task | R_random | R_expert | grace | PPO true (rejax) | GAIL | AIRL | PPO true (SB3) "
        "| grace / PPO | GAIL / PPO | AIRL / PPO | success grace / PPO / GAIL / AIRL | acc. train / held-out "
        "| evolve s | proposals | grace env steps |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref, evo, m = r["reference"], r["evolve"], r.get("methods", {})
        if ref is None or (evo is None and not m):
            lines.append(f"| {r['task']} | " + " | ".join(["not run"] * 15) + " |")
            continue
        g = m.get("grace")
        miss = "n/a (brax)" if r["task"] in BRAX else "not run (time)"
        acc = _acc(evo)
        env_steps = "-"
        if evo and g and "steps" in g:
            env_steps = f"{g['steps']:,} + {evo['negatives_env_steps']:,} neg."
        succ = " / ".join(_cell(m.get(k), "success", miss) for k in ("grace", "ppo_rejax", "gail", "airl"))
        lines.append(
            f"| {r['task']} | {ref['random_return_mean']:.1f} | {ref['expert_return_mean']:.1f} | "
            f"{_cell(g, 'norm')} | {_cell(m.get('ppo_rejax'), 'norm')} | {_cell(m.get('gail'), 'norm', miss)} | "
            f"{_cell(m.get('airl'), 'norm', miss)} | {_cell(m.get('ppo_sb3'), 'norm', miss)} | {_cell(g, 'ratio')} | "
            f"{_cell(m.get('gail'), 'ratio', miss)} | {_cell(m.get('airl'), 'ratio', miss)} | {succ} | {acc} | "
            f"{'-' if evo is None else round(evo['wall_s'])} | {'-' if evo is None else evo['proposals']} | {env_steps} |")
    if rounds_rows:
        lines += ["", "## Active negatives (`--rounds`)", "",
                  "Same as the main rows, but grace runs extra rounds in which PPO (200k steps x 2 seeds) "
                  "trains on the current best reward and its rollouts join the negatives (GRACE step 6). "
                  "These env steps count in grace's budget.", "",
                  "| task | rounds | grace | PPO true (rejax) | grace / PPO | success grace | acc. train / held-out "
                  "| evolve s | proposals | grace env steps |", "|---|---|---|---|---|---|---|---|---|---|"]
        for r in rounds_rows:
            m, evo = r.get("methods", {}), r["evolve"]
            g = m.get("grace")
            lines.append(
                f"| {r['task']} | {r['rounds']} | {_cell(g, 'norm')} | {_cell(m.get('ppo_rejax'), 'norm')} | "
                f"{_cell(g, 'ratio')} | {_cell(g, 'success')} | {_acc(evo)} | {round(evo['wall_s'])} | {evo['proposals']} | "
                f"{g['steps']:,} + {evo['negatives_env_steps']:,} neg. |")
    if sweep_rows:
        lines += ["", "## Demos-count sweep", "",
                  "First N of the committed demo episodes (`Trajectories.select`); same budget as above.", "",
                  "| task | demos | grace | GAIL | acc. train / held-out | evolve s |", "|---|---|---|---|---|---|"]
        for r in sweep_rows:
            m, evo = r.get("methods", {}), r["evolve"]
            acc = _acc(evo)
            lines.append(f"| {r['task']} | {r['n_demos']} | {_cell(m.get('grace'), 'norm')} | "
                         f"{_cell(m.get('gail'), 'norm')} | {acc} | {'-' if evo is None else round(evo['wall_s'])} |")
    notes = CACHE / "notes.md"
    if notes.exists():
        lines += ["", notes.read_text().strip()]
    (RESULTS / f"{OUT_NAME}.md").write_text("\n".join(lines) + "\n")
    _dump(RESULTS / f"{OUT_NAME}.json", {"steps": args.steps, "seeds": args.seeds, "generations": args.generations,
                                     "rounds": args.rounds, "rows": rows, "rounds_rows": rounds_rows,
                                     "sweep": sweep_rows})
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(HEADLINE + ORIGINALS + BRAX))
    ap.add_argument("--steps", type=int, default=200_000, help="env steps per PPO / GAIL / AIRL run")
    ap.add_argument("--brax-steps", type=int, default=100_000,
                    help="env steps per PPO run on Brax tasks (rejax + brax on CPU is slow)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--rounds", type=int, default=1, help="grace active-negative rounds (1 = none)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--demos-count", default="1,2,4,8", help="demos-count sweep on --sweep-task ('' = none)")
    ap.add_argument("--sweep-task", default="pendulum")
    ap.add_argument("--llm-base-url", default="")
    ap.add_argument("--llm-model", default="")
    ap.add_argument("--no-baselines", action="store_true", help="skip GAIL / AIRL / SB3 PPO")
    ap.add_argument("--force", action="store_true", help="recompute cached stages")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    if args.llm_base_url:  # never mix with (or reuse) the offline operator's cached results
        global CACHE, RUNS, OUT_NAME
        CACHE, RUNS, OUT_NAME = RESULTS / "quality-llm", ROOT / "runs" / "quality-llm", "quality-llm"
    tasks = [t for t in args.tasks.split(",") if t]
    counts = [int(c) for c in args.demos_count.split(",") if c]
    sweep = [(args.sweep_task, n) for n in counts]
    if not args.table_only:
        for t in tasks:
            print(f"[quality] {t}", flush=True)
            references(t, args.force)
            evolve_task(t, 8, args)
            train_task(t, 8, args)
            for algo in ALGOS:
                baseline(t, algo, 8, args)
        for t, n in sweep:
            evolve_task(t, n, args)
            train_task(t, n, args)
            baseline(t, "gail", n, args)
    write_table(tasks, sweep, args)
    relativise_results()


def relativise_results() -> None:
    """Committed results name files relative to the repo, never this machine's paths."""
    prefix = f"{ROOT}/"
    for path in list(CACHE.rglob("*.json")) + list(CACHE.rglob("*.py")):
        text = path.read_text()
        if prefix in text:
            path.write_text(text.replace(prefix, ""))


if __name__ == "__main__":
    sys.exit(main())
