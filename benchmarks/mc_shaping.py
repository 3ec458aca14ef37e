"""Terminating MountainCar: can the shaping and the payment make grace's winner reach the flag as fast as GAIL?

quality17's MountainCar winner reaches the flag on 0.975 of episodes where true-reward PPO never
does, but in ~148 steps where the scripted experts take ~120, so its normalised return is 0.66
against GAIL's 0.85 (benchmarks/results/quality17.md). Its reward pays the goal; the speed comes
from its learned potential, `192.2 * (|velocity| - 0.0456)`. This asks whether another potential
on the same reward would have taught faster, in ONE PPO batch (quality17's 200,000 env steps, 5
seeds, the task's PPO settings):

- the potential's scale times 0, 0.25, 0.5, 1 (the file as grace hands it over), 2, 4, 8, 16;
- two energy-like potentials the potential search does not try (it tries one feature at a time):
  `(position + 0.5)^2 + 100 velocity^2` and `|position + 0.5| + 10 |velocity|`, each ranking 0.97
  with time along the expert episodes where `|velocity|` ranks 0.78, scaled to the same rise
  (8.8) and zero where the experts end, as the search sizes its own;
- the file paid as a shift (no floor, grace/search/payment.py) with the potential's scale times
  1, 2, 4, 8 and the payment stage's own `living_cost / spread` (`payment.shift_sizing` on the
  expert train rows);
- the true reward.

A diagnostic of the miss, not a tuning: nothing here feeds back into grace's defaults. Steps =
the mean episode length (the true reward pays -1 per step until the flag; 200 = never reached).
Writes benchmarks/results/mc_shaping.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "mc_shaping.md"
WINNER = "quality17/mountaincar/evolve-full.json"
GAIL = "quality17/mountaincar/gail.json"
STEPS, SEEDS = 200_000, 5
SCALES = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
SHIFT_SCALES = (1.0, 2.0, 4.0, 8.0)
ENERGIES = {  # label -> (numpy form over (position, velocity), the potential's expression in the file)
    "(position + 0.5)^2 + 100 velocity^2": (lambda x, v: (x + 0.5) ** 2 + 100 * v ** 2,
                                            "((s.position + 0.5) ** 2 + 100.0 * s.velocity ** 2)"),
    "|position + 0.5| + 10 |velocity|": (lambda x, v: np.abs(x + 0.5) + 10 * np.abs(v),
                                         "(xp.abs(s.position + 0.5) + 10.0 * xp.abs(s.velocity))"),
}


def scaled(source: str, k: float) -> str:
    from grace.program import RewardProgram

    program = RewardProgram(source)
    return program.with_params(program.params | {"potential_scale": float(f"{program.params['potential_scale'] * k:.4g}")}).source


def energy(source: str, form, expr: str, rise: float) -> str:
    """The winner with `form` as its potential, scaled to `rise` from the start state (-0.5, 0)
    to where the experts end, and zero there."""
    from grace.program import RewardProgram

    d = np.load(ROOT / "demos" / "mountaincar.npz")
    ends = d["obs"][np.cumsum(d["lengths"] + 1) - 1]  # each episode's last state
    zero = float(np.mean(form(ends[:, 0], ends[:, 1])))
    scale = rise / (zero - float(form(np.array([-0.5]), np.array([0.0]))[0]))
    new = re.sub(r'return p\["potential_scale"\] \* \(.*\)\n',
                 f'return p["potential_scale"] * ({expr} - p["potential_zero"])\n', source)
    if new == source:
        raise SystemExit("mc_shaping: the winner's potential has an unexpected form")
    params = {k: v for k, v in RewardProgram(new).params.items() if k != "potential_centre"}
    return RewardProgram(new).with_params(params | {"potential_scale": float(f"{scale:.4g}"),
                                                    "potential_zero": float(f"{zero:.4g}")}).source


def stage_factor(source: str) -> float:
    """The payment stage's scale for the shift's potential (`payment.shift_sizing`), on the expert
    states of the shaping stage's episodes, rewarded in a sandbox worker as the run does."""
    import asyncio

    from grace.config import EvolveConfig
    from grace.data.trajectories import load_demos
    from grace.fitness.base import fit_settings
    from grace.program import RewardProgram
    from grace.proposers.offline.potential import expert_rewards
    from grace.search.executor import LocalExecutor
    from grace.search.payment import shift_sizing
    from grace.search.shaping import trajectories
    from grace.tasks import get_task

    task = get_task("mountaincar")
    demos = ROOT / "demos" / "mountaincar.npz"
    cfg = EvolveConfig(task="mountaincar", demos=str(demos), out="unused", report=False)
    executor = LocalExecutor(task, workers=1)
    try:
        trajs = asyncio.run(trajectories(executor, task, cfg, load_demos(demos, task), None, source))
    finally:
        executor.close()
    sizing = shift_sizing(RewardProgram(source), expert_rewards(trajs), fit_settings(cfg, task).gamma)
    if sizing is None:
        raise SystemExit("mc_shaping: the winner has no learned potential scale")
    print(f"[mc_shaping] the stage's sizing: {sizing}", flush=True)
    return float(sizing["factor"])


def main() -> int:
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality import normalise, seed_cells

    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.program import RewardProgram
    from grace.search.payment import without_floor
    from grace.types import PPOJob

    winner = json.loads((RESULTS / WINNER).read_text())["winner"]["source"]
    params = RewardProgram(winner).params
    ref = json.loads((RESULTS / "quality" / "mountaincar" / "reference.json").read_text())
    rise = params["potential_scale"] * params["potential_zero"]  # |v| runs from 0 at the start to ~zero at the end
    sources = {f"|velocity| potential x {k:g}" + (" (the winner)" if k == 1 else " (no potential)" if k == 0 else ""):
               scaled(winner, k) for k in SCALES}
    sources |= {label: energy(winner, form, expr, rise) for label, (form, expr) in ENERGIES.items()}
    factor = stage_factor(winner)
    for k in sorted({*SHIFT_SCALES, round(factor, 2)}):
        label = f"as a shift, |velocity| potential x {k:g}" + (" (the stage's living cost / spread)" if k == round(factor, 2) else "")
        sources[label] = without_floor(RewardProgram(scaled(winner, k))).source
    sources["true reward"] = TRUE_REWARD
    t0 = time.time()
    results = run_ppo("mountaincar", PPOJob(tuple(sources.values()), STEPS, SEEDS, 0), timeout=5400)
    seconds = time.time() - t0
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    gail = json.loads((RESULTS / GAIL).read_text())
    g = [normalise(r["true_return"], ref) for r in gail["runs"]]
    lines = ["# Terminating MountainCar: the shaping and payment of quality17's winner vs GAIL", "",
             f"`python benchmarks/mc_shaping.py` at {commit}: quality17's winner ({WINNER}) with each potential, "
             f"ONE PPO batch, {STEPS:,} env steps, {SEEDS} seeds, the task's PPO settings, {seconds:.0f} s on 2 shared "
             "cores. Normalised return = (R - R_random) / (R_expert - R_random) per seed (quality.py's references); "
             "steps = mean episode length (200: the flag never reached); success = share of episodes reaching the "
             f"flag. GAIL: {GAIL} (same demos, steps and seeds).", "",
             "| potential | normalised return | per seed | steps | success |", "|---|---|---|---|---|"]
    rows = []
    for (label, _), res in zip(sources.items(), results, strict=True):
        if not res.ok:
            lines.append(f"| {label} | error: {str(res.error)[:80]} | | | |")
            continue
        n = [normalise(r, ref) for r in res.true_returns]
        rows.append({"potential": label, "normalised": n, "returns": list(res.true_returns), "success": res.success_rate})
        lines.append(f"| {label} | {seed_cells(n)} | {-np.mean(res.true_returns):.0f} | {res.success_rate:.3f} |")
    lines.append(f"| GAIL (quality17) | {seed_cells(g)} | {-np.mean([r['true_return'] for r in gail['runs']]):.0f} | - |")
    OUT.write_text("\n".join(lines) + "\n")
    OUT.with_suffix(".json").write_text(json.dumps({"commit": commit, "steps": STEPS, "seeds": SEEDS, "seconds": seconds,
                                                     "rows": rows, "sources": sources}, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
