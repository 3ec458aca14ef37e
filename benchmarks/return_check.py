"""What the episode-return margin sees: ranking from the first state vs from every time step.

The fitness multiplies the discrimination by `return_ranking` (grace/fitness/returns.py): the share
of (expert, negative) episode pairs where the expert's discounted return from the episode's start
is higher. With a short discount (Pendulum trains PPO at gamma 0.9: ~10 steps) that return covers
the first steps only, where a swing-up expert is no better off than a hanging random policy. This
script measures, for each task's hand-written reference reward (and, on Pendulum, a few simple
rewards), that ranking beside the same ranking taken at every time step (the discounted return from
step t of an expert episode against those of negative episodes from the same t; ties half), on
the committed demos and 20 random-policy episodes, at the task's PPO discount and at 0.99.
Writes benchmarks/results/return_check.md.

    python benchmarks/return_check.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TASKS = ["pendulum", "cartpole", "cartpole_fixed", "acrobot", "acrobot_fixed", "mountaincar", "mountaincar_fixed"]
PENDULUM_EXTRA = {
    "-|cos theta - 1|": "def reward(s, a, s_next, p):\n    return -xp.abs(s_next.cos_theta - 1.0)\n",
    "-|sin theta| (hanging pays too)": "def reward(s, a, s_next, p):\n    return -xp.abs(s_next.sin_theta)\n",
    "-|theta|": "def reward(s, a, s_next, p):\n    return -xp.abs(xp.arctan2(s_next.sin_theta, s_next.cos_theta))\n",
}


def suffix_returns(r: np.ndarray, episode: np.ndarray, step: np.ndarray, gamma: float) -> np.ndarray:
    """Per row: the discounted return of its episode from that row's step on (rows present only)."""
    out = np.zeros(len(r))
    for e in np.unique(episode):
        rows = np.flatnonzero(episode == e)
        rows = rows[np.argsort(step[rows])]
        acc, nxt = 0.0, None
        for i in rows[::-1]:
            acc = float(r[i]) + (gamma ** float(nxt - step[i]) * acc if nxt is not None else 0.0)
            nxt = step[i]
            out[i] = acc
    return out


def main() -> None:
    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.fitness.batched import call_reward
    from grace.fitness.ppo import ppo_settings
    from grace.fitness.returns import above_at_equal_time, return_ranking
    from grace.program import RewardProgram
    from grace.sandbox.compile import compile_reward
    from grace.tasks import get_task

    lines = ["# What the episode-return margin sees", "",
             "`python benchmarks/return_check.py`: each reward's `return_ranking` on the committed demos vs 20 "
             "random-policy episodes, from the episodes' first state (what the fitness multiplies by) and at every "
             "time step (expert vs negative discounted returns from the same step t), at the task's PPO discount "
             "and at 0.99. No terminal value (these rewards have none). 1.00 = the expert out-earns every negative.",
             "", "| task | reward | PPO gamma | from the start | at every step | gamma 0.99: from the start | at every step |",
             "|---|---|---|---|---|---|---|"]
    for name in TASKS:
        task = get_task(name)
        demos = load_demos(ROOT / "demos" / f"{name}.npz", task)
        data = build_offline_data(task, demos, [("random", random_negatives(task, 20, 0))])
        expert = np.asarray(data["label"], bool)
        gamma = float(ppo_settings(task)["gamma"])
        rewards = {"reference": task.reference_reward.read_text()} | (PENDULUM_EXTRA if name == "pendulum" else {})
        for label, src in rewards.items():
            program = RewardProgram(src)
            batch = {k: data[k] for k in ("s", "a", "s_next")}
            r = np.asarray(call_reward(compile_reward(src, task.schema), batch, program.params)[0], np.float64)
            cells = []
            for g in (gamma, 0.99):
                start = return_ranking(r, data["episode"], data["step"], expert, 0.0, g)["return_ranking"]
                v = suffix_returns(r, np.asarray(data["episode"]), np.asarray(data["step"]), g)
                every = above_at_equal_time(v[expert], data["step"][expert], v[~expert], data["step"][~expert])
                cells += [f"{start:.3f}", f"{every:.3f}"]
            lines.append(f"| {name} | {label} | {gamma} | " + " | ".join(cells) + " |")
            print(lines[-1], flush=True)
    (RESULTS / "return_check.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
