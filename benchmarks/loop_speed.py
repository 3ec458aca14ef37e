"""Throughput of the whole evolution loop on this machine (offline operator + sandbox pool).

Reports candidate evaluations/s through propose -> persist -> sandbox (with PARAMS fitting) ->
persist -> select, and how the wall clock splits between proposing and evaluating: the share of
time the proposer sat idle waiting on evaluation ("eval only"), the share where both overlapped,
and the share where the evaluator waited on the proposer ("propose only"). One run per worker
count, side by side. Writes benchmarks/results/loop_speed.md.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import grace
from grace.config import EvolveConfig

ROOT = Path(__file__).resolve().parents[1]


def run(task: str, workers: int, generations: int, fit: bool) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        cfg = EvolveConfig(task=task, demos=str(ROOT / "demos" / f"{task}.npz"), out=str(Path(tmp) / "r"),
                           report=False).override({
                               "search.generations": generations, "search.population": 16, "search.islands": 2,
                               "sandbox.workers": workers, "fit.params": fit})
        t0 = time.perf_counter()
        res = grace.evolve(cfg, progress=False)
        wall = time.perf_counter() - t0
    st = res.stats
    ov = st.overlap.seconds
    total = sum(ov.values()) or 1.0
    return {"task": task, "workers": workers, "fit": fit, "wall_s": wall, "evaluated": st.evaluated,
            "evals_per_s": st.evaluated / wall, "duplicates": st.duplicates,
            "eval_only": ov["eval_only"] / total, "both": ov["both"] / total,
            "propose_only": ov["propose_only"] / total, "idle": ov["idle"] / total,
            "mean_eval_ms": 1000 * st.eval_seconds / max(st.evaluated, 1)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/loop_speed.md"))
    args = ap.parse_args()
    rows = [run(task, w, args.generations, fit) for task in ("cartpole", "mountaincar")
            for w, fit in ((1, True), (2, True), (2, False))]
    lines = [
        "# Evolution loop throughput",
        "",
        f"`python benchmarks/loop_speed.py`: {args.generations} generations + init, 2 islands x 16, offline "
        f"operator, committed demos + 64 random episodes; {os.cpu_count()} cores. 'fit' = PARAMS fitting "
        "(Nelder-Mead, ~120 reward calls per candidate) inside the sandbox worker. The time split is "
        "wall-clock: 'eval only' = the proposer had nothing in flight while evaluations ran (it waits on "
        "evaluation at generation boundaries), 'propose only' = the sandbox waited on the proposer.",
        "",
        "| task | workers | fit | evaluated | evals/s | mean eval ms | eval only | both | propose only | idle | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['task']} | {r['workers']} | {r['fit']} | {r['evaluated']} | {r['evals_per_s']:.1f} | "
                     f"{r['mean_eval_ms']:.0f} | {r['eval_only']:.0%} | {r['both']:.0%} | {r['propose_only']:.0%} | "
                     f"{r['idle']:.0%} | {r['wall_s']:.1f} |")
    base = {(r["task"], r["fit"]): r for r in rows if r["workers"] == 1}
    lines.append("")
    for r in rows:
        if r["workers"] == 2 and (r["task"], True) in base and r["fit"]:
            lines.append(f"- {r['task']}: 2 workers / 1 worker throughput = "
                         f"{r['evals_per_s'] / base[(r['task'], True)]['evals_per_s']:.2f}x")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
