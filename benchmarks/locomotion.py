"""Locomotion, the paper's MuJoCo table on Brax: PPO on grace's reward vs PPO on the true reward.

Per task (hopper, walker2d, ant, humanoid; grace/tasks/locomotion.py), grace evolves a reward from
the committed demos (demos/<task>.npz: 8 episodes of a brax-PPO expert, `grace demos collect`) with
its defaults (offline operator, PPO in the loop); then ONE compiled PPO batch
(`grace.fitness.ppo.run_ppo`) trains the winner and the true reward (brax's) with the same env
steps and seeds. Scored by the true return of the final policies (mean over seeds) and
grace / true-reward PPO. A task without demos is a "pending GPU" row (its expert needs brax's
50M-step budgets; benchmarks/results/locomotion_speed.md). Each stage caches its JSON under
<results>/locomotion/ (re-runs resume; --force redoes); the table: locomotion.md + locomotion.json.

    python benchmarks/locomotion.py --tasks hopper --steps 1000000 --seeds 3
    python benchmarks/locomotion.py --tasks hopper --steps 20000 --seeds 1 --generations 1 \\
        --set ppo.select_top=0 --set ppo.select_dense=0 --set fit.shaping=false --results /tmp/loco
    python benchmarks/locomotion.py --brax-batch ...   # brax's own batch geometry (GPU budgets)

GAIL / AIRL: not run here. Plan (BASELINE_NOTE): imitation's GAIL and AIRL in
benchmarks/.venv-imitation need a MuJoCo twin there (`pip install mujoco` resolves: mujoco 4.0.0;
imitation 1.0.1 pins gymnasium 0.29.1, whose twins are Hopper-v4 etc.); but a twin is MuJoCo's
physics and gymnasium's observation (rootz relative, no torso height), not brax's, so the 8 brax
demos would first be re-collected by the same expert on the twin (a domain gap the expert may not
cross). Brax-native GAIL / AIRL (a discriminator reward inside grace's PPO batch, as `ppo`
fitness's IRL mode already scores states) avoids both and is the cheaper route.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from evolve_train import METHODS, dump, evolve_cached, load, train_cached  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
NAME = "locomotion"
TASKS = ["hopper", "walker2d", "ant", "humanoid"]
BASELINE_NOTE = ("GAIL / AIRL not run: imitation's trainers need a MuJoCo twin in benchmarks/.venv-imitation "
                 "(`pip install mujoco` resolves there, mujoco 4.0.0, not installed; gymnasium 0.29.1 twins are "
                 "Hopper-v4 etc. with MuJoCo physics and gymnasium's observation, so the brax demos would be "
                 "re-collected on the twin); brax-native GAIL / AIRL inside grace's PPO batch is the planned route")


DEMOS = ROOT / "demos"


def _demos(task: str) -> Path:
    return DEMOS / f"{task}.npz"


def _ppo_overrides(task: str, args: argparse.Namespace) -> dict[str, Any]:
    from grace.tasks.locomotion import BRAX_BATCH

    out: dict[str, Any] = dict(BRAX_BATCH[task]) if args.brax_batch else {}
    for kv in args.ppo:
        key, _, value = kv.partition("=")
        out[key] = json.loads(value)
    return out


def evolve_task(task: str, args: argparse.Namespace) -> dict[str, Any]:
    settings = tuple(f"ppo.continuous.{k}={json.dumps(v)}" for k, v in _ppo_overrides(task, args).items())
    return evolve_cached(task, _demos(task), args, "locomotion", settings=settings)


def train_task(task: str, evolved: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    n = len(METHODS) * args.seeds
    return train_cached(task, evolved, args, "locomotion", algo_kwargs=_ppo_overrides(task, args), timeout=36000,
                        row=lambda res: {"ok": True, "returns": res.true_returns, "success": res.success_rate,
                                         "env_steps": res.env_steps, "compile_s": res.compile_s, "run_s": res.run_s,
                                         "steps_per_s": res.env_steps * n / max(res.run_s, 1e-9)})


def _ret(m: dict[str, Any] | None) -> str:
    if not m or not m.get("ok"):
        return "-" if not m else f"error: {str(m.get('error'))[:60]}"
    r = m["returns"]
    return f"{np.mean(r):.0f}" + (f" ± {np.std(r):.0f}" if len(r) > 1 else "")


def _ratio(m: dict[str, Any]) -> str:
    g, t = m.get("grace", {}), m.get("true_reward", {})
    if not (g.get("ok") and t.get("ok")) or np.mean(t["returns"]) <= 0:
        return "-"
    return f"{np.mean(g['returns']) / np.mean(t['returns']):.2f}"


def write_table(tasks: list[str], args: argparse.Namespace) -> None:
    rows, codes = [], []
    lines = [
        "# Locomotion (Brax): PPO on grace's reward (8 expert demos) vs PPO on the true reward", "",
        f"Produced by `python benchmarks/locomotion.py` (offline operator with grace's defaults, {args.generations} "
        f"generations, seed {args.seed}{'; overrides ' + ', '.join(args.set + args.ppo) if args.set or args.ppo else ''}"
        f"{'; brax batch geometry' if args.brax_batch else ''}; PPO: {args.steps:,} env steps per run, {args.seeds} "
        "seeds, both columns of a row trained in ONE compiled batch with the task's PPO settings). Return = brax's "
        f"true return of the final policies (mean ± std over seeds). {BASELINE_NOTE}.", "",
        "| task | return grace | return true-reward PPO | grace / true | GAIL / AIRL | winner fitness (size) "
        "| evolve s | PPO batch s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in tasks:
        ev, tr = load(args.cache / task / "evolve.json"), load(args.cache / task / "train.json")
        if not _demos(task).exists() and ev is None:
            lines.append(f"| {task} | pending GPU | pending GPU | - | - | no demos/{task}.npz: its brax-PPO expert "
                         "needs a GPU (locomotion_speed.md) | - | - |")
            continue
        if ev is None or tr is None:
            lines.append(f"| {task} | " + " | ".join(["not run"] * 7) + " |")
            continue
        m, w = tr["methods"], ev["winner"]
        rows.append({"task": task, "steps": tr["steps"], "seeds": tr["seeds"], "methods": m, "ppo": tr["ppo"],
                     "winner": {k: w[k] for k in ("program_id", "fitness", "heldout", "size")},
                     "evolve_s": ev["wall_s"], "train_s": tr["wall_s"]})
        lines.append(f"| {task} | **{_ret(m.get('grace'))}** | {_ret(m.get('true_reward'))} | {_ratio(m)} | - | "
                     f"{w['fitness']:.3f} ({w['size']}) | {ev['wall_s']:.0f} | {tr['wall_s']:.0f} |")
        codes += [f"### {task}: the winner ({w['program_id']}, offline fitness {w['fitness']:.3f})", "",
                  "```python", w["source"].strip(), "```", ""]
    lines += ["", "## The winning rewards", "", *(codes or ["(none yet)"])]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    dump(args.results / f"{NAME}.json", {"steps": args.steps, "seeds": args.seeds, "generations": args.generations,
                                          "set": args.set, "ppo": args.ppo, "brax_batch": args.brax_batch,
                                          "baselines": BASELINE_NOTE, "rows": rows})
    print("\n".join(lines[:len(tasks) + 6]), flush=True)


def main() -> int:
    global DEMOS
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default=",".join(TASKS))
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--brax-batch", action="store_true",
                    help="PPO with brax's own batch geometry (grace.tasks.locomotion.BRAX_BATCH), for GPU budgets")
    ap.add_argument("--ppo", action="append", default=[], metavar="KEY=VALUE",
                    help="a PPO setting (a [ppo.continuous] field, JSON value) for every PPO run, in the loop and after")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every evolution (as `grace evolve --set`)")
    ap.add_argument("--demos", type=Path, default=DEMOS, help="the folder of <task>.npz demos (default demos/)")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where locomotion.md / .json and the locomotion/ cache go (default benchmarks/results)")
    args = ap.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    if unknown := [t for t in tasks if t not in TASKS]:
        print(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(TASKS)}", file=sys.stderr)
        return 2
    if min(args.steps, args.seeds, args.generations) < 1:
        print("--steps, --seeds and --generations must be >= 1", file=sys.stderr)
        return 2
    if bad := [kv for kv in args.ppo if "=" not in kv]:
        print(f"--ppo takes KEY=VALUE, got {bad[0]!r}", file=sys.stderr)
        return 2
    DEMOS = args.demos.resolve()
    args.results = args.results.resolve()
    args.cache = args.results / NAME
    args.runs = ROOT / "runs" / NAME if args.results == RESULTS else args.results / "runs"
    if not args.table_only:
        for task in tasks:
            if _demos(task).exists():
                train_task(task, evolve_task(task, args), args)
            write_table(tasks, args)
    write_table(tasks, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
