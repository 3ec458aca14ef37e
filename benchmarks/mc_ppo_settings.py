"""Terminating MountainCar: do RL Zoo's PPO settings for MountainCar-v0 teach grace's winner faster?

quality18's MountainCar winner trains to 0.81 normalised (~136 steps to the flag) where GAIL's
generator reaches 0.85 (benchmarks/results/quality18.md). grace's PPO trains every discrete task
with one default ([ppo.discrete]: 32 envs x 64 steps, 4 epochs, 8 minibatches, about 100 updates
in 200,000 steps). RL Zoo keeps per-env settings, and its MountainCar-v0 PPO (16 envs x 16 steps,
GAE lambda 0.98, 4 epochs, batch 64, observations normalised, rewards not) updates 8x as often.
The issue ("PPO settings belong to the task") allows a task its own settings; this measures, in one
process, what RL Zoo's would do before any task takes them:

- grace's winner, the same file paid with its floor, and the true reward, 5 seeds, 200,000 env steps,
  under the task's current settings and under RL Zoo's (one PPO batch per setting);

Nothing here changes a default. Since 67dc89f / 338679f the MountainCar tasks carry these settings
(`MOUNTAINCAR_PPO`, grace/tasks/builtin.py, equal to ZOO over grace's discrete defaults), so a re-run
now trains the first two rows alike. Writes benchmarks/results/mc_ppo_settings.md (+ .json).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "mc_ppo_settings.md"
WINNER = "quality18/mountaincar/evolve-full.json"
STEPS, SEEDS = 200_000, 5
# rl-baselines3-zoo hyperparams/ppo.yml, MountainCar-v0 (SB3 defaults for what it leaves out:
# learning rate 3e-4, batch 64 -> 256 / 64 = 4 minibatches, clip 0.2); VecNormalize(norm_reward=False).
ZOO = {"num_envs": 16, "num_steps": 16, "num_epochs": 4, "num_minibatches": 4, "gae_lambda": 0.98,
       "gamma": 0.99, "ent_coef": 0.0, "learning_rate": 3e-4, "normalize_observations": True,
       "normalize_rewards": False}
SETTINGS = {"the task's (grace's discrete defaults)": None, "RL Zoo's MountainCar-v0": ZOO,
            "RL Zoo's, rewards normalised (grace's default)": ZOO | {"normalize_rewards": True}}


def main() -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality import normalise, seed_cells

    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.program import FLOOR_KEY, RewardProgram
    from grace.types import PPOJob

    full = json.loads((RESULTS / WINNER).read_text())
    winner = RewardProgram(full["winner"]["source"])
    sources = {"grace's winner (paid as a shift)": winner.source,
               "the same, paid with its floor": winner.with_params(winner.params | {FLOOR_KEY: full["payment"]["floor"]}).source,
               "true reward": TRUE_REWARD}
    ref = json.loads((RESULTS / "quality" / "mountaincar" / "reference.json").read_text())
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    rows, seconds = [], {}
    for label, kw in SETTINGS.items():
        t0 = time.time()
        results = run_ppo("mountaincar", PPOJob(tuple(sources.values()), STEPS, SEEDS, 0, algo_kwargs=kw), timeout=5400)
        seconds[label] = time.time() - t0
        print(f"[mc_ppo_settings] {label}: {seconds[label]:.0f} s", flush=True)
        for name, res in zip(sources, results, strict=True):
            n = [normalise(r, ref) for r in res.true_returns] if res.ok else None
            rows.append({"settings": label, "reward": name, "normalised": n, "error": None if res.ok else str(res.error),
                         "returns": list(res.true_returns) if res.ok else None, "success": res.success_rate if res.ok else None})
    lines = ["# Terminating MountainCar: RL Zoo's PPO settings vs the task's, on grace's winner", "",
             f"`python benchmarks/mc_ppo_settings.py` at {commit}: {WINNER}'s winner, its floor-paid version and the "
             f"true reward, {STEPS:,} env steps, {SEEDS} seeds, one PPO batch per setting (2 shared cores). RL Zoo's: "
             f"`{json.dumps(ZOO)}`. Normalised return = (R - R_random) / (R_expert - R_random) per seed (quality.py's "
             "references); steps = mean episode length (200: the flag never reached). A diagnostic: no default "
             "changes here.", "",
             "| PPO settings | reward | normalised return | per seed | steps | success | batch s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        if r["normalised"] is None:
            lines.append(f"| {r['settings']} | {r['reward']} | error: {r['error'][:80]} | | | | |")
            continue
        lines.append(f"| {r['settings']} | {r['reward']} | {seed_cells(r['normalised'])} | {-np.mean(r['returns']):.0f} | "
                     f"{r['success']:.3f} | {seconds[r['settings']]:.0f} |")
    OUT.write_text("\n".join(lines) + "\n")
    OUT.with_suffix(".json").write_text(json.dumps({"commit": commit, "steps": STEPS, "seeds": SEEDS, "zoo": ZOO,
                                                     "seconds": seconds, "rows": rows}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
