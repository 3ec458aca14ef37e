"""Shaping learned from the demos: PPO on MountainCar rewards with and without the potential the
offline operator learns (grace/proposers/offline/potential.py), against true-reward PPO.

The potential is found exactly as `grace evolve`'s final stage finds it (`fit.shaping`): the train
split of the committed demos and random-policy episodes, scaled by the reward's spread along two
expert episodes. Rewards trained, in ONE compiled PPO batch (same steps, seeds, settings: the
task's own, as `grace train` uses):

    reference            the hand-written reference reward (flag + 0.1 * height)
    reference + Phi      the same with the learned potential
    flag                 the goal indicator alone (as sparse as the true reward; MountainCar only)
    flag + Phi           the same with the learned potential
    true reward          the env's own reward

Scored on the true return, normalised (R - R_random) / (R_expert - R_random) with quality.py's
references. Writes benchmarks/results/shaping/TASK.json and the table benchmarks/results/shaping.md.

    nice python benchmarks/shaping.py --tasks mountaincar,pendulum --steps 200000 --seeds 2
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
CACHE = RESULTS / "shaping"
FLAG = '''"""MountainCar: the flag alone (as sparse as the true reward)."""

PARAMS = {"goal_position": 0.5}


def reward(s, a, s_next, p):
    return xp.where(s_next.position >= p["goal_position"], 1.0, 0.0)
'''


def shaped(source: str, task, data, demos, gamma: float) -> tuple[str, dict]:
    """`source` with the potential `grace evolve`'s final stage would add (the same search, reward
    spread and horizon)."""
    from grace.fitness.batched import call_reward
    from grace.program import RewardProgram
    from grace.proposers.offline.potential import HORIZON_CAP, search_potential, with_potential
    from grace.sandbox.compile import compile_reward
    from grace.search.negatives import shaping_trajectories

    program = RewardProgram(source)
    compiled = compile_reward(source, task.schema)
    eps = list(demos.episodes())[:2]
    r = np.concatenate([call_reward(compiled, {"s": e.obs[:-1], "a": e.actions, "s_next": e.obs[1:]},
                                    program.params)[0] for e in eps])
    pot = search_potential(shaping_trajectories(task, data), task.schema, float(np.std(r)),
                           horizon=min(HORIZON_CAP, 1.0 / (1.0 - gamma)))
    if pot is None:
        raise SystemExit("no potential found")
    return with_potential(program, pot).validate(task.schema).source, pot.meta


def run(task_name: str, steps: int, seeds: int) -> dict:
    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.fitness.ppo import TRUE_REWARD, ppo_settings, run_ppo
    from grace.tasks import get_task
    from grace.types import PPOJob

    task = get_task(task_name)
    gamma = float(ppo_settings(task)["gamma"])
    demos = load_demos(ROOT / "demos" / f"{task_name}.npz", task)
    data = build_offline_data(task, demos, [("random", random_negatives(task, 20, 0))])
    reference = task.reference_reward.read_text()
    sources = {"reference": reference}
    sources["reference + Phi"], meta = shaped(reference, task, data, demos, gamma)
    potentials = {"reference + Phi": meta}
    if task_name.startswith("mountaincar"):
        sources["flag"] = FLAG
        sources["flag + Phi"], potentials["flag + Phi"] = shaped(FLAG, task, data, demos, gamma)
    sources["true reward"] = TRUE_REWARD
    t0 = time.time()
    results = run_ppo(task, PPOJob(tuple(sources.values()), steps=steps, seeds=seeds, eval_episodes=16), timeout=3600)
    ref = references(task_name)
    rows = {}
    for name, res in zip(sources, results, strict=True):
        if not res.ok:
            raise SystemExit(f"{name}: {res.error}")
        rows[name] = {"true_returns": res.true_returns, "normalised": [normalise(x, ref) for x in res.true_returns],
                      "success_per_seed": res.success_per_seed}
    return {"task": task_name, "steps": steps, "seeds": seeds, "gamma": gamma, "seconds": time.time() - t0,
            "potentials": potentials, "references": ref, "rows": rows,
            "sources": {k: v for k, v in sources.items() if k.endswith("Phi")}}


def table() -> str:
    lines = ["# Shaping learned from the demos", "",
             "`nice python benchmarks/shaping.py --tasks TASK --steps N --seeds S` per task (CPU, one compiled PPO batch "
             "per task, the task's own PPO settings as `grace train` uses them). The potential is the one "
             "`grace evolve`'s final stage (`fit.shaping`) finds from the committed demos and random episodes. True "
             "return of the final policy (16 episodes per seed), normalised (R - R_random) / (R_expert - R_random) "
             "with quality.py's references. Each task's raw numbers: benchmarks/results/shaping/TASK.json.", ""]
    for path in sorted(CACHE.glob("*.json")):
        out = json.loads(path.read_text())
        ref = out["references"]
        lines += [f"## {out['task']}", "",
                  f"{out['steps']:,} env steps x {out['seeds']} seeds, discount {out['gamma']}, {out['seconds']:.0f} s; "
                  f"R_random = {ref['random_return_mean']:.1f}, R_expert = {ref['expert_return_mean']:.1f}.", ""]
        for name, meta in out["potentials"].items():
            lines.append(f"- potential of `{name}`: `{meta['potential']}`; rank correlation with time on held-out "
                         f"expert episodes {meta['potential_progress']:.2f}; above random episodes at equal time in "
                         f"{meta['potential_above']:.2f} of pairs")
        lines += ["", "| reward | true return per seed | normalised (mean) | success per seed |", "|---|---|---|---|"]
        for name, row in out["rows"].items():
            rets = ", ".join(f"{x:.1f}" for x in row["true_returns"])
            succ = ", ".join(f"{x:.2f}" for x in row["success_per_seed"] or []) or "-"
            lines.append(f"| {name} | {rets} | {np.mean(row['normalised']):.2f} | {succ} |")
        norm = {k: float(np.mean(v["normalised"])) for k, v in out["rows"].items()}
        for name in (k for k in norm if k.endswith(" + Phi")):
            base = name.removesuffix(" + Phi")
            verdict = "better" if norm[name] > norm[base] + 0.05 else "worse" if norm[name] < norm[base] - 0.05 else \
                "no clear difference (within 0.05)"
            lines.append(f"\n{name} vs {base}: {norm[name]:.2f} vs {norm[base]:.2f} normalised ({verdict}; "
                         f"true-reward PPO {norm['true reward']:.2f}; {out['seeds']} seeds, so a small gap is noise).")
        lines += ["", "The shaped reference reward:", "", "```python", out["sources"]["reference + Phi"].rstrip(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--tasks", default="mountaincar")
    ap.add_argument("--table-only", action="store_true")
    args = ap.parse_args()
    CACHE.mkdir(parents=True, exist_ok=True)
    for name in [] if args.table_only else args.tasks.split(","):
        (CACHE / f"{name}.json").write_text(json.dumps(run(name, args.steps, args.seeds), indent=1, default=float))
    text = table()
    (RESULTS / "shaping.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
