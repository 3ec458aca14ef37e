"""Search quality per wall-clock second: the batched PARAMS search vs the old path.

One evolution per task and path (offline operator, committed demos + 64 random episodes, the
same seed, 2 sandbox workers, no PPO in the loop), each stopped after the same wall-clock
budget (`search.max_wall_time`), run back to back. From each
run's archive: for every second t since the first candidate was stored, the best held-out
fitness among the candidates evaluated by t, and the held-out fitness of the candidate that was
best on train at t (what the run would hand over if stopped then). Writes
benchmarks/results/search_clock.md and search_clock.png.

    python benchmarks/search_clock.py [--seconds 60] [--tasks cartpole,pendulum,acrobot]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import grace
from grace.config import EvolveConfig

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "benchmarks" / "results"
PATHS = {"old path": {"fit.batched": False, "fit.warm_start": False}, "batched": {"fit.batched": True}}


def run(task: str, path: str, seconds: float, seed: int) -> dict:
    from grace.search.archive import Archive

    with tempfile.TemporaryDirectory() as tmp:
        cfg = EvolveConfig(task=task, demos=str(ROOT / "demos" / f"{task}.npz"), out=str(Path(tmp) / "r"),
                           report=False, seed=seed).override({
                               "search.generations": 1000, "search.max_wall_time": seconds,
                               "search.population": 16, "search.islands": 2,
                               "sandbox.workers": 2, "ppo.select_top": 0, **PATHS[path]})
        t0 = time.time()
        res = grace.evolve(cfg, progress=False)
        wall = time.time() - t0
        archive = Archive(Path(tmp) / "r" / "archive.sqlite", create=False)
        rows = sorted((r for r in archive.programs(status="ok") if r.fitness is not None), key=lambda r: r.created)
        archive.close()
    t = np.array([r.created - t0 for r in rows])
    held = np.array([r.heldout if r.heldout is not None else np.nan for r in rows])
    train = np.array([r.fitness for r in rows])
    return {"task": task, "path": path, "wall_s": wall, "evaluated": res.stats.evaluated, "t": t,
            "generations": max((r.generation for r in rows), default=0),
            "best_heldout": np.fmax.accumulate(np.nan_to_num(held, nan=-np.inf)),
            "heldout_of_best_train": held[_argmax_so_far(train)]}


def _argmax_so_far(x: np.ndarray) -> np.ndarray:
    """Index of the running maximum (the first best wins)."""
    out, best = np.zeros(len(x), int), 0
    for i in range(len(x)):
        if x[i] > x[best]:
            best = i
        out[i] = best
    return out


def at(r: dict, key: str, seconds: float) -> str:
    k = int(np.searchsorted(r["t"], seconds, side="right")) - 1
    return "-" if k < 0 else f"{r[key][k]:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--tasks", default="cartpole,pendulum,acrobot")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    runs = [run(task, path, args.seconds, args.seed) for task in tasks for path in PATHS]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in runs if r["task"] == task):
            ax.step(r["t"], r["best_heldout"], where="post", label=f"{r['path']}: best held-out")
            ax.step(r["t"], r["heldout_of_best_train"], where="post", linestyle=":",
                    label=f"{r['path']}: held-out of the train-best")
        ax.set_title(task)
        ax.set_xlabel("seconds since the run started")
        ax.set_ylabel("held-out fitness")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "search_clock.png", dpi=110)
    marks = tuple(round(args.seconds * f) for f in (0.125, 0.25, 0.5, 1.0))
    lines = ["# Search quality per wall-clock second: batched PARAMS search vs the old path", "",
             f"`python benchmarks/search_clock.py --seconds {args.seconds:g}`: one evolution per task and "
             f"path (offline operator, committed demos + 64 random episodes, seed {args.seed}, 2 islands x 16, "
             f"2 sandbox workers, no PPO in the loop), each stopped after {args.seconds:g} s of search "
             f"(`search.max_wall_time`), back to back on "
             f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end). 'old path' = sequential "
             "PARAMS fitting with every calibration from (0, 0) (`fit.batched = false, fit.warm_start = false`), "
             "'batched' = the default. Cells: the best held-out fitness among the candidates evaluated by then / "
             "the held-out fitness of the candidate best on train by then. Figure: search_clock.png.", "",
             "| task | path | evaluated | generations | " + " | ".join(f"at {m} s" for m in marks) + " | at the end |",
             "|---|---|---|---|" + "---|" * (len(marks) + 1)]
    for r in runs:
        cells = [f"{at(r, 'best_heldout', m)} / {at(r, 'heldout_of_best_train', m)}" for m in marks]
        end = f"{r['best_heldout'][-1]:.3f} / {r['heldout_of_best_train'][-1]:.3f}"
        lines.append(f"| {r['task']} | {r['path']} | {r['evaluated']} | {r['generations']} | " + " | ".join(cells)
                     + f" | {end} |")
    (OUT / "search_clock.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
