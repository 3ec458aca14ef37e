"""Offline search on every built-in classic-control task: evolved reward vs the hand-written reference.

For each task: `grace evolve` with the built-in offline operator (no LLM) on the committed demos,
then the task's reference reward is scored with the same fitness on the same data (`grace eval
--run`). Writes benchmarks/results/offline_search.md.

    python benchmarks/offline_search.py [--tasks cartpole pendulum] [--generations 12]
    python benchmarks/offline_search.py --tasks hopper walker2d --set ppo.select_top=0 \
        --out benchmarks/results/offline_locomotion.md   # offline only: no brax PPO in the loop on a CPU
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["cartpole", "cartpole_fixed", "mountaincar", "mountaincar_fixed", "acrobot", "acrobot_fixed",
         "pendulum", "inverted_pendulum", "examples/tasks/point_reach.toml"]


def grace(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "grace.cli", *args], cwd=ROOT, capture_output=True, text=True)


def _code(text: str) -> str:
    """A reward file's summary line and code, without its provenance (which names the run's folder)."""
    body = text.split('"""', 2)
    return (f'"""{body[1].splitlines()[0]}"""' + body[2]).strip() if len(body) == 3 else text.strip()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=TASKS)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/offline_search.md"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every evolution (as `grace evolve --set`)")
    args = ap.parse_args()
    rows = []
    for task in args.tasks:
        name = Path(task).stem
        run = ROOT / "runs" / f"bench-offline-{name}"
        demos = f"demos/{name}.npz"
        t0 = time.time()
        res = grace("evolve", "--task", task, "--demos", demos, "--out", str(run), "--overwrite", "--quiet",
                    "--generations", str(args.generations), "--seed", str(args.seed),
                    *(a for kv in args.set for a in ("--set", kv)))
        wall = time.time() - t0
        if res.returncode != 0:
            print(f"{task}: evolve failed\n{res.stderr[-2000:]}", file=sys.stderr)
            continue
        best = json.loads(grace("eval", str(run / "best_reward.py"), "--run", str(run), "--json").stdout)
        ref_path = ROOT / "grace/tasks/rewards" / f"{name.removesuffix('_fixed')}.py"
        ref = json.loads(grace("eval", str(ref_path), "--run", str(run), "--json").stdout) if ref_path.exists() else None
        n_prog = res.stdout.split("evaluated ")[1].split(" programs")[0] if "evaluated " in res.stdout else "?"
        row = {"task": name, "fitness": best["fitness"], "heldout": best["heldout_fitness"],
               "accuracy": best["accuracy"], "heldout_accuracy": best["heldout_accuracy"],
               "size": best["size"], "ref_fitness": ref["fitness"] if ref else None,
               "ref_heldout": ref["heldout_fitness"] if ref else None, "evaluated": n_prog, "wall_s": wall,
               "code": _code((run / "best_reward.py").read_text())}
        rows.append(row)
        print(json.dumps(row), flush=True)
    lines = [
        "# Offline search: evolved reward vs hand-written reference",
        "",
        f"Built-in offline operator (no LLM), {args.generations} generations x 2 islands x 16, seed {args.seed}, "
        "committed demos (8 expert episodes), 64 random-policy episodes as negatives, 25% of episodes held out. "
        "Fitness = 1 + LL/ln2 of the calibrated GRACE discriminator (0 chance, 1 perfect); accuracy is balanced. "
        "The reference reward is scored with the same fitness on the same data (its PARAMS as written). "
        "Produced by `python benchmarks/offline_search.py"
        f"{' --tasks ' + ' '.join(args.tasks) if args.tasks != TASKS else ''}"
        f"{''.join(' --set ' + kv for kv in args.set)}` on a 2-core machine.",
        "",
        "| task | fitness (train) | fitness (held-out) | accuracy (train / held-out) | AST size | reference fitness (train / held-out) | programs evaluated | wall s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    for r in rows:
        lines.append(f"| {r['task']} | {fmt(r['fitness'])} | {fmt(r['heldout'])} | {fmt(r['accuracy'])} / {fmt(r['heldout_accuracy'])} "
                     f"| {r['size']} | {fmt(r['ref_fitness'])} / {fmt(r['ref_heldout'])} | {r['evaluated']} | {r['wall_s']:.0f} |")
    lines += ["", "## The winning rewards (code; provenance in each run's best_reward.py)", ""]
    for r in rows:
        lines += [f"### {r['task']}", "", "```python", r["code"], "```", ""]
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
