"""Shaping learned from the demos: PPO on MountainCar rewards with and without the potential the
offline operator learns (grace/proposers/offline/potential.py), against true-reward PPO.

The potential is found exactly as `grace evolve`'s final stage finds it (`fit.shaping`): the train
split of the committed demos and random-policy episodes, scaled by the reward's spread along two
expert episodes. Rewards trained, in ONE compiled PPO batch (same steps, seeds, settings: the
task's own, as `grace train` uses):

    reference            the hand-written reference reward (flag + 0.1 * height)
    reference + Phi      the same with the learned potential
    flag                 the goal indicator alone (as sparse as the true reward)
    flag + Phi           the same with the learned potential
    true reward          the env's own reward

Scored on the true return, normalised (R - R_random) / (R_expert - R_random) with quality.py's
references. Writes benchmarks/results/shaping.md and shaping.json.

    nice python benchmarks/shaping.py --steps 200000 --seeds 2
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import normalise, references  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
FLAG = '''"""MountainCar: the flag alone (as sparse as the true reward)."""

PARAMS = {"goal_position": 0.5}


def reward(s, a, s_next, p):
    return xp.where(s_next.position >= p["goal_position"], 1.0, 0.0)
'''


def shaped(source: str, task, data, demos) -> tuple[str, dict]:
    """`source` with the potential the final stage would add (None when none is found)."""
    from grace.fitness.batched import call_reward
    from grace.program import RewardProgram
    from grace.proposers.offline.potential import search_potential, with_potential
    from grace.sandbox.compile import compile_reward
    from grace.search.negatives import shaping_trajectories

    program = RewardProgram(source)
    compiled = compile_reward(source, task.schema)
    eps = list(demos.episodes())[:2]
    r = np.concatenate([call_reward(compiled, {"s": e.obs[:-1], "a": e.actions, "s_next": e.obs[1:]},
                                    program.params)[0] for e in eps])
    pot = search_potential(shaping_trajectories(task, data), task.schema, float(np.std(r)))
    if pot is None:
        raise SystemExit("no potential found")
    return with_potential(program, pot).validate(task.schema).source, pot.meta


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--task", default="mountaincar")
    args = ap.parse_args()

    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.fitness.ppo import TRUE_REWARD, ppo_settings, run_ppo
    from grace.tasks import get_task
    from grace.types import PPOJob

    task = get_task(args.task)
    demos = load_demos(ROOT / "demos" / f"{args.task}.npz", task)
    data = build_offline_data(task, demos, [("random", random_negatives(task, 20, 0))])
    reference = task.reference_reward.read_text()
    ref_shaped, meta = shaped(reference, task, data, demos)
    flag_shaped, flag_meta = shaped(FLAG, task, data, demos)
    sources = {"reference": reference, "reference + Phi": ref_shaped, "flag": FLAG, "flag + Phi": flag_shaped,
               "true reward": TRUE_REWARD}
    t0 = time.time()
    results = run_ppo(task, PPOJob(tuple(sources.values()), steps=args.steps, seeds=args.seeds, eval_episodes=16),
                      timeout=3600)
    seconds = time.time() - t0
    ref = references(args.task)
    rows = {}
    for name, res in zip(sources, results, strict=True):
        if not res.ok:
            raise SystemExit(f"{name}: {res.error}")
        norm = [normalise(x, ref) for x in res.true_returns]
        rows[name] = {"true_returns": res.true_returns, "normalised": norm, "success_per_seed": res.success_per_seed}
    gamma = ppo_settings(task)["gamma"]
    out = {"task": args.task, "steps": args.steps, "seeds": args.seeds, "gamma": gamma, "seconds": seconds,
           "potential": meta, "flag_potential": flag_meta, "references": ref, "rows": rows,
           "sources": {k: v for k, v in sources.items() if k.endswith("Phi")}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "shaping.json").write_text(json.dumps(out, indent=1, default=float))
    lines = [f"# Shaping learned from the demos: {args.task}", "",
             f"`python benchmarks/shaping.py --steps {args.steps} --seeds {args.seeds}` ({seconds:.0f} s, CPU, one "
             f"compiled PPO batch; the task's PPO settings, discount {gamma}). True return of the final policy "
             f"(16 episodes per seed), normalised (R - R_random) / (R_expert - R_random) with R_random = "
             f"{ref['random_return_mean']:.1f}, R_expert = {ref['expert_return_mean']:.1f}.", "",
             f"Learned potential (added to the reference): `{meta['potential']}`, rank correlation with time on "
             f"held-out expert episodes {meta['potential_progress']:.2f}, above random episodes at equal time in "
             f"{meta['potential_above']:.2f} of pairs. For the flag: `{flag_meta['potential']}`.", "",
             "| reward | true return per seed | normalised (mean) | success per seed |", "|---|---|---|---|"]
    for name, row in rows.items():
        rets = ", ".join(f"{x:.1f}" for x in row["true_returns"])
        succ = ", ".join(f"{x:.2f}" for x in row["success_per_seed"] or [])
        lines.append(f"| {name} | {rets} | {np.mean(row['normalised']):.2f} | {succ} |")
    lines += ["", "The shaped reward file (reference + Phi):", "", "```python", sources["reference + Phi"].rstrip(), "```"]
    (RESULTS / "shaping.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
