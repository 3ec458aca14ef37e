"""Search quality per wall-clock second: the batched PARAMS search vs the old path.

One evolution per task, path and seed (offline operator, committed demos + 64 random episodes,
2 sandbox workers, no PPO in the loop), each stopped after the same wall-clock budget
(`search.max_wall_time`), run back to back. From each run's archive: at every moment t, the best
held-out fitness among the candidates evaluated by t, and the held-out fitness of the candidate
that was best on train at t (what the run would hand over if stopped then); averaged over the
seeds. Paths: the old path (sequential PARAMS fitting, cold calibration), the batched default,
and batched on 500 rows (`fit.batch_rows = 500`, not the default). Writes
benchmarks/results/search_clock.md and search_clock.png.

    python benchmarks/search_clock.py [--seconds 60] [--seeds 1] [--tasks cartpole,pendulum,acrobot]
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
PATHS = {"old path": {"fit.batched": False, "fit.warm_start": False}, "batched": {"fit.batched": True},
         "500 rows": {"fit.batched": True, "fit.batch_rows": 500}}


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
    return {"task": task, "path": path, "seed": seed, "wall_s": wall, "evaluated": res.stats.evaluated, "t": t,
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


def at(r: dict, key: str, seconds: float) -> float:
    """The run's `key` at `seconds` (nan before its first candidate)."""
    k = int(np.searchsorted(r["t"], seconds, side="right")) - 1
    return float("nan") if k < 0 else float(r[key][k])


def mean_at(runs: list[dict], key: str, seconds: float) -> float:
    """The seeds' mean of `key` at `seconds`; nan until every seed has a candidate."""
    return float(np.mean([at(r, key, seconds) for r in runs]))


def cell(x: float) -> str:
    return "-" if np.isnan(x) else f"{x:.3f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--tasks", default="cartpole,pendulum,acrobot")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", type=int, default=1, help="seeds per task and path: seed, seed + 1, ...")
    args = ap.parse_args()
    tasks = args.tasks.split(",")
    seeds = list(range(args.seed, args.seed + args.seeds))
    runs = [run(task, path, args.seconds, seed) for task in tasks for seed in seeds for path in PATHS]
    grid = np.linspace(0.0, args.seconds, 241)

    def group(task: str, path: str) -> list[dict]:
        return [r for r in runs if (r["task"], r["path"]) == (task, path)]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(tasks), figsize=(4.5 * len(tasks), 3.6), squeeze=False)
    for ax, task in zip(axes[0], tasks, strict=True):
        for path in PATHS:
            g = group(task, path)
            line, = ax.plot(grid, [mean_at(g, "best_heldout", t) for t in grid], label=f"{path}: best held-out")
            ax.plot(grid, [mean_at(g, "heldout_of_best_train", t) for t in grid], linestyle=":",
                    color=line.get_color(), label=f"{path}: held-out of the train-best")
        ax.set_title(f"{task} (mean of {len(seeds)} seed{'s' * (len(seeds) > 1)})")
        ax.set_xlabel("seconds since the run started")
        ax.set_ylabel("held-out fitness")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(OUT / "search_clock.png", dpi=110)
    marks = tuple(round(args.seconds * f) for f in (0.125, 0.25, 0.5, 1.0))
    lines = ["# Search quality per wall-clock second: batched PARAMS search vs the old path", "",
             f"`python benchmarks/search_clock.py --seconds {args.seconds:g} --seeds {args.seeds}`: one evolution per "
             f"task, path and seed (offline operator, committed demos + 64 random episodes, seeds {seeds}, 2 islands x 16, "
             f"2 sandbox workers, no PPO in the loop), each stopped after {args.seconds:g} s of search "
             f"(`search.max_wall_time`), back to back on "
             f"{os.cpu_count()} cores (load average {os.getloadavg()[0]:.1f} at the end). 'old path' = sequential "
             "PARAMS fitting with every calibration from (0, 0) (`fit.batched = false, fit.warm_start = false`), "
             "'batched' = the default, '500 rows' = batched on 500 rows (`fit.batch_rows = 500`, not the default). "
             "Cells: the best held-out fitness among the candidates evaluated by then / the held-out fitness of the "
             "candidate best on train by then, each the mean over the seeds ('-': a seed had no candidate yet); "
             "'evaluated' and 'generations': the seeds' mean. Figure: search_clock.png (the same means).", "",
             "| task | path | evaluated | generations | " + " | ".join(f"at {m} s" for m in marks) + " | at the end |",
             "|---|---|---|---|" + "---|" * (len(marks) + 1)]
    for task in tasks:
        for path in PATHS:
            g = group(task, path)
            cells = [f"{cell(mean_at(g, 'best_heldout', m))} / {cell(mean_at(g, 'heldout_of_best_train', m))}"
                     for m in (*marks, np.inf)]
            lines.append(f"| {task} | {path} | {np.mean([r['evaluated'] for r in g]):.0f} | "
                         f"{np.mean([r['generations'] for r in g]):.0f} | " + " | ".join(cells) + " |")
    (OUT / "search_clock.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
