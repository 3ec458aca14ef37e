"""Benchmark: N candidate rewards trained in one compiled PPO program vs one by one (CartPole).

Usage: python benchmarks/ppo_batch.py [--steps 100000] [--seeds 1] [--out benchmarks/results/ppo_batch.md]

For N = 1, 4, 16 candidates (the reference CartPole reward with different PARAMS) on
cartpole_fixed: compile seconds, run seconds, aggregate env steps/s, and the ratio against
training the N candidates one by one (measured for N = 4 as four separate compiles + runs;
extrapolated for N = 16 as 16 x the N = 1 time).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

from grace.fitness.ppo import run_ppo
from grace.program import RewardProgram
from grace.tasks import get_task
from grace.types import PPOJob


def candidates(n: int) -> list[str]:
    """n distinct programs: the reference reward with different centre weights."""
    prog = RewardProgram(get_task("cartpole_fixed").reference_reward.read_text())
    return [prog.with_params({**prog.params, "centre_weight": 0.1 + 0.05 * i}).source for i in range(n)]


def run(sources: list[str], steps: int, seeds: int) -> dict[str, float]:
    t0 = time.perf_counter()
    res = run_ppo("cartpole_fixed", PPOJob(tuple(sources), steps, seeds=seeds))
    wall = time.perf_counter() - t0
    r = res[0]
    assert all(x.ok for x in res), [x.error for x in res]
    return {"compile_s": r.compile_s, "run_s": r.run_s, "wall_s": wall,
            "env_steps": r.env_steps * len(sources) * seeds,
            "return": sum(x.true_return_mean for x in res) / len(res)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--seeds", type=int, default=1)
    ap.add_argument("--out", default="benchmarks/results/ppo_batch.md")
    args = ap.parse_args()
    rows = {n: run(candidates(n), args.steps, args.seeds) for n in (1, 4, 16)}
    single = rows[1]["compile_s"] + rows[1]["run_s"]
    t0 = time.perf_counter()
    seq4 = [run([src], args.steps, args.seeds) for src in candidates(4)]
    seq4_total = sum(r["compile_s"] + r["run_s"] for r in seq4)
    seq4_wall = time.perf_counter() - t0
    lines = [
        "# PPO fitness: many candidates per compile (CartPole, fixed horizon)",
        "",
        f"`python benchmarks/ppo_batch.py --steps {args.steps} --seeds {args.seeds}`; "
        f"{platform.machine()}, {os.cpu_count()} CPU cores (shared with other jobs), JAX on CPU. "
        "rejax PPO (grace defaults: 16 envs x 128 steps, 8 epochs), one `lax.switch` over the "
        "candidate rewards vmapped over (candidate x seed); compile is one XLA compile per batch.",
        "",
        "| N | compile s | run s | env steps (all runs) | aggregate env steps/s | one by one s | batched s | speed-up |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, r in rows.items():
        batched = r["compile_s"] + r["run_s"]
        if n == 1:
            seq, note = single, "(itself)"
        elif n == 4:
            seq, note = seq4_total, "measured"
        else:
            seq, note = n * single, "extrapolated: 16 x N=1"
        lines.append(
            f"| {n} | {r['compile_s']:.1f} | {r['run_s']:.1f} | {r['env_steps']:,} | "
            f"{r['env_steps'] / r['run_s']:,.0f} | {seq:.1f} ({note}) | {batched:.1f} | {seq / batched:.1f}x |"
        )
    lines += [
        "",
        f"One by one for N=4 was measured as 4 separate compiles + runs ({seq4_wall:.1f} s wall "
        "including Python overhead); for N=16 it is extrapolated as 16 x (compile + run) of N=1.",
        f"Mean true return reached after {args.steps:,} steps: "
        + ", ".join(f"N={n}: {r['return']:.0f}" for n, r in rows.items()) + ".",
        "",
        "Brax hopper numbers: pending a GPU (none was lent to this task).",
        "",
    ]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
