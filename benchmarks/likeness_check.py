"""Does expert-likeness rank policies like their true return? (the measure PPO in the loop picks by)

PPO (one compiled batch, `--seeds` seeds, `--steps` env steps) trains on a set of rewards for one
task: the true reward, teach3's Pendulum winner (a narrow gated bump) and the same run's offline
best, and a few hand-written ones (dense closeness to upright, height, a spinning exploit, the bump
without its gate). Each policy's visited states are scored by both expert-likeness measures fitted
on the committed demos: the mean closeness of each state to its nearest expert state (the first
measure) and the distribution match `ExpertSimilarity.likeness` (the current one). Writes
benchmarks/results/likeness_check.md (+ .json).

    python benchmarks/likeness_check.py            # pendulum, 200k steps, 3 seeds (~2 min on 2 cores)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
HAND = {
    "-|theta| (dense closeness to upright)": "return -xp.abs(xp.arctan2(s_next.sin_theta, s_next.cos_theta))",
    "cos theta (height)": "return s_next.cos_theta",
    "angular velocity^2 (spinning pays)": "return s_next.angular_velocity ** 2",
    "teach3's bump without its gate": ("return xp.exp(-((xp.arctan2(s_next.sin_theta, s_next.cos_theta) / 0.17) "
                                       "** 2))"),
}


def main() -> None:
    from grace.data.trajectories import load_demos
    from grace.fitness.discriminator import ExpertSimilarity
    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.tasks import get_task
    from grace.types import PPOJob

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/likeness_check.md"))
    args = ap.parse_args()
    task = get_task("pendulum")
    evolved = json.loads((ROOT / "benchmarks/results/teach3/pendulum/evolve-full.json").read_text())
    sources = {"true reward": TRUE_REWARD, "teach3 winner (gated narrow bump)": evolved["winner"]["source"],
               "teach3 offline best": evolved["offline_best"]["source"]}
    sources |= {k: f"def reward(s, a, s_next, p):\n    {v}\n" for k, v in HAND.items()}
    demos = load_demos(ROOT / "demos/pendulum.npz", task)
    disc = ExpertSimilarity(np.concatenate([ep.obs[1:] for ep in demos.episodes()]))
    t0 = time.time()
    res = run_ppo(task, PPOJob(tuple(sources.values()), args.steps, args.seeds, 0, keep_trajectories=True),
                  timeout=3600)
    rows = []
    for name, r in zip(sources, res, strict=True):
        states = np.concatenate([ep.obs[1:] for ep in r.trajectories.episodes()])
        rows.append({"reward": name, "true_return": r.true_return_mean, "per_seed": r.true_returns,
                     "nearest_state_mean": float(disc(states).mean()), "likeness": disc.likeness(states)})
    true = [r["true_return"] for r in rows]
    rho = {k: float(spearmanr(true, [r[k] for r in rows])[0]) for k in ("nearest_state_mean", "likeness")}
    lines = ["# Expert-likeness vs true return (Pendulum)", "",
             f"`python benchmarks/likeness_check.py`: PPO {args.steps:,} steps x {args.seeds} seeds per reward, one "
             f"batch ({time.time() - t0:.0f} s); both measures fitted on demos/pendulum.npz. Spearman rank correlation "
             f"with the true return: nearest-state mean {rho['nearest_state_mean']:.2f}, distribution match "
             f"{rho['likeness']:.2f}.", "",
             "| reward | true return (per seed) | nearest-state mean (first measure) | distribution match (likeness) |",
             "|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: -r["true_return"]):
        seeds = ", ".join(f"{x:.0f}" for x in r["per_seed"])
        name = r["reward"].replace("|", "\\|")
        lines.append(f"| {name} | {r['true_return']:.0f} ({seeds}) | {r['nearest_state_mean']:.3f} | "
                     f"{r['likeness']:.3f} |")
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps({"rows": rows, "spearman": rho}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
