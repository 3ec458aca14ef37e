"""PPO's reward transform and shaping: does symlog keep a potential-based shaping term intact?

On the fixed-horizon Acrobot (a discrete task: grace's discrete PPO default transforms each step's
reward with symlog), PPO trains, in ONE compiled batch per transform (same steps, seeds, settings:
the task's own, as `grace train` uses):

    true reward        the env's own reward
    sparse             the tip above the line (the form of quality3's winner: 1 above, 0 below)
    dense              the tip height, -(cos th1 + cos(th1 + th2))
    sparse + Phi(k)    sparse with the shaping potential k * tip height, k = 1 and 10

under `reward_transform` symlog and none. Shaping F = gamma * Phi(s') - Phi(s) leaves the optimal
policy unchanged only when it is added to the reward PPO sees as it is; grace applies the transform
to the reward (terminal value included) and adds the shaping after it
(grace/fitness/ppo_batch.py REWARD_TRANSFORMS). Scored on the true return, normalised
(R - R_random) / (R_expert - R_random) with quality.py's references. Writes
benchmarks/results/transform.json and the table benchmarks/results/transform.md.

    nice python benchmarks/transform.py --steps 200000 --seeds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from statistics import fmean

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import normalise, references  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
TASK = "acrobot_fixed"
TIP = "(s_next.cos_theta1 + (s_next.cos_theta1 * s_next.cos_theta2 - s_next.sin_theta1 * s_next.sin_theta2))"
SPARSE = f'''"""Fixed-horizon Acrobot: the tip above the line."""

PARAMS = {{"w": 1.0, "t": -1.06, "k": 0.0}}


def reward(s, a, s_next, p):
    tip = p["w"] * xp.where({TIP} < p["t"], 1.0, 0.0)
    return tip, {{"tip": tip}}
'''
DENSE = f'''"""Fixed-horizon Acrobot: the tip height."""

PARAMS = {{"w": 1.0}}


def reward(s, a, s_next, p):
    tip = -p["w"] * {TIP}
    return tip, {{"tip": tip}}
'''
POTENTIAL = f'''

def potential(s, p):
    """The tip height, scaled by k."""
    return -p["k"] * {TIP.replace("s_next.", "s.")}
'''


def sources() -> dict[str, str]:
    from grace.fitness.ppo import TRUE_REWARD

    shaped = SPARSE + POTENTIAL
    return {"true reward": TRUE_REWARD, "sparse": SPARSE, "dense": DENSE,
            "sparse + Phi(1)": shaped.replace('"k": 0.0', '"k": 1.0'),
            "sparse + Phi(10)": shaped.replace('"k": 0.0', '"k": 10.0')}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    from grace.fitness.ppo import run_ppo
    from grace.types import PPOJob

    ref = references(TASK)
    srcs = sources()
    rows: dict[str, dict[str, list[float]]] = {name: {} for name in srcs}
    seconds = {}
    for transform in ("symlog", "none"):
        t0 = time.time()
        job = PPOJob(tuple(srcs.values()), args.steps, args.seeds, 0, {"reward_transform": transform})
        for name, res in zip(srcs, run_ppo(TASK, job, timeout=6000), strict=True):
            if res.error:
                raise SystemExit(f"{name}: {res.error}")
            rows[name][transform] = [float(x) for x in res.true_returns]
        seconds[transform] = time.time() - t0
        print(f"[transform] {transform}: {seconds[transform]:.0f} s", flush=True)
    (RESULTS / "transform.json").write_text(json.dumps(
        {"task": TASK, "steps": args.steps, "seeds": args.seeds, "reference": ref, "seconds": seconds,
         "returns": rows}, indent=1))
    lines = ["# PPO's reward transform and shaping", "",
             f"`nice python benchmarks/transform.py --steps {args.steps} --seeds {args.seeds}` (CPU; {TASK}, "
             f"one compiled PPO batch per transform, the task's PPO settings otherwise). True return of the final "
             f"policy per seed; normalised (R - R_random) / (R_expert - R_random), R_random = "
             f"{ref['random_return_mean']:.1f}, R_expert = {ref['expert_return_mean']:.1f}. Raw numbers: "
             "benchmarks/results/transform.json.", "",
             "| reward | symlog: true return per seed | symlog: normalised | none: true return per seed | none: normalised |",
             "|---|---|---|---|---|"]
    for name, by in rows.items():
        cells = [f"{', '.join(f'{x:.0f}' for x in by[t])} | {normalise(fmean(by[t]), ref):.2f}" for t in ("symlog", "none")]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    (RESULTS / "transform.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
