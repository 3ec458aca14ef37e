"""PARAMS fitting alone: calibration warm start (`fit.warm_start`, the default) vs every Newton
solve from (0, 0) in the sequential search (`fit.batched = false`; the batched one is measured by
loop_speed.py), on the built-in reference rewards (trusted files, so they run in this process),
interleaved run by run so machine load hits both alike. Same data as the loop: the committed demos
plus 64 random episodes. Reports median ms per fit, reward evaluations, and whether the two paths
fitted the same PARAMS. Writes benchmarks/results/fit_speed.md.

    python benchmarks/fit_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np

from grace.config import FitSettings
from grace.data.dataset import build_offline_data
from grace.data.rollout import random_negatives
from grace.data.trajectories import load_demos
from grace.fitness.params import fit_params
from grace.program import RewardProgram
from grace.sandbox.compile import CompiledReward
from grace.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]
TASKS = ("cartpole", "mountaincar", "acrobot", "pendulum")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/fit_speed.md"))
    args = ap.parse_args()
    rows = []
    for name in TASKS:
        task = get_task(name)
        data = build_offline_data(task, load_demos(ROOT / "demos" / f"{name}.npz", task),
                                  [("random", random_negatives(task, 64, 0))])
        source = Path(task.reference_reward).read_text()
        compiled, params = CompiledReward(source, task.schema), dict(RewardProgram(source).params)
        ms: dict[bool, list[float]] = {True: [], False: []}
        fitted: dict[bool, tuple[dict[str, float], int]] = {}
        for _ in range(args.repeats):
            for warm in (True, False):
                t0 = time.perf_counter()
                fitted[warm] = fit_params(compiled, data, params, seed=0,
                                          fit=FitSettings(batched=False, warm_start=warm))
                ms[warm].append(1000 * (time.perf_counter() - t0))
        rows.append((name, len(params), fitted, {k: float(np.median(v)) for k, v in ms.items()}))
        print(name, rows[-1][3], flush=True)
    lines = ["# PARAMS fitting: warm-started calibration vs cold", "",
             f"`python benchmarks/fit_speed.py --repeats {args.repeats}`: `fit_params` on each task's reference reward "
             f"(default `[fit]`: 4000-row subsample, budget 120 + centring), committed demos + 64 random episodes, "
             f"median of {args.repeats} runs each, warm and cold interleaved; {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f} at the end (shared machine: absolute times are noisy, the ratio less so). "
             "Both paths use the same one-exp Newton step; 'cold' starts every solve from (0, 0) as the former "
             "path did.", "",
             "| task | # params | evaluations | cold ms | warm ms | cold / warm | same fitted PARAMS |",
             "|---|---|---|---|---|---|---|"]
    for name, n, fitted, med in rows:
        same = fitted[True][0] == fitted[False][0]
        lines.append(f"| {name} | {n} | {fitted[True][1]} / {fitted[False][1]} | {med[False]:.0f} | {med[True]:.0f} | "
                     f"{med[False] / med[True]:.2f}x | {same} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
