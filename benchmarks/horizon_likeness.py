"""Which expert-likeness ranks goal-task policies by how well they do: goal states, every expert
state, or every expert state over the experts' horizon?

PPO in the loop chooses a winner by how expert-like its policies are
(`ExpertSimilarity.policy_likeness`). On a goal task the offline dataset's positives are the goal
transitions; on a fixed-horizon variant (acrobot_fixed, mountaincar_fixed) the demos come from the
terminating env, so expert episodes end at the goal while PPO's policies run on for the whole
horizon. This script trains PPO (2 seeds, 200k steps, the task's settings) on the true reward and a
few simple readable rewards per task, and scores each policy with discriminators built three ways
from the same offline dataset (committed demos + 20 random episodes):

- goal states: the positives (the goal transitions), every visited state alike;
- every expert state: all states of the whole expert episodes, every visited state alike (grace's
  choice on goal tasks whose demos come from the env PPO trains on);
- over the horizon: the same references, a policy's state at step t weighed by the share of expert
  episodes still running at t (grace's choice on the fixed-horizon variants).

On the terminating tasks each score is multiplied by the match of the share of episodes that
terminate, as grace does there. It reports each policy's true return beside the scores, and the
Spearman correlation of each score with the true return over the policies. Writes
benchmarks/results/horizon_likeness.md.

    python benchmarks/horizon_likeness.py [--steps 200000] [--seeds 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TIP = "s_next.cos_theta1 + (s_next.cos_theta1 * s_next.cos_theta2 - s_next.sin_theta1 * s_next.sin_theta2)"


def _prog(expr: str, params: str = "{}") -> str:
    return f"PARAMS = {params}\n\n\ndef reward(s, a, s_next, p):\n    r = {expr}\n    return r, {{\"r\": r}}\n"


ACROBOT = {
        "tip height (dense)": _prog(f"-({TIP})"),
        "tip above the line 1.06 (quality5's winner)": _prog(f'xp.where({TIP} < p["t"], 1.0, 0.0)', '{"t": -1.06, "terminal": 99.0}'),
        "tip above 0 (an easier line)": _prog(f'xp.where({TIP} < 0.0, 1.0, 0.0)'),
        "tip low (hanging pays)": _prog(f"{TIP}"),
}
MOUNTAINCAR = {
        "position (dense)": _prog("s_next.position"),
        "abs(velocity) (energy)": _prog("xp.abs(s_next.velocity)"),
        "flag reached (sparse)": _prog('xp.where(s_next.position > 0.5, 1.0, 0.0)'),
        "left (-position)": _prog("-s_next.position"),
}
REWARDS = {"acrobot_fixed": ACROBOT, "mountaincar_fixed": MOUNTAINCAR, "acrobot": ACROBOT, "mountaincar": MOUNTAINCAR}


def _spearman(a: list[float], b: list[float]) -> float:
    """Rank correlation, ties given their average rank (nan when either side is constant)."""
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic) if len(set(a)) > 1 and len(set(b)) > 1 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args()
    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.fitness.discriminator import ExpertSimilarity
    from grace.fitness.ppo import TRUE_REWARD, train_candidates
    from grace.tasks import get_task
    from grace.types import PPOJob

    lines = ["# Expert-likeness on goal tasks: goal states vs every expert state vs the same over the experts' horizon", "",
             f"`python benchmarks/horizon_likeness.py --steps {args.steps} --seeds {args.seeds}`: PPO (the task's settings, "
             f"{args.seeds} seeds x {args.steps} steps, one compiled batch per task) on the true reward and simple readable "
             "rewards; each policy's states scored by discriminators built from the same offline dataset (committed demos "
             "+ 20 random episodes): *goal states* = the positives (goal transitions), every visited state alike; *every "
             "expert state* = all states of the whole expert episodes, every visited state alike; *over the horizon* = the "
             "same references, a policy's state at step t weighed by the share of expert episodes still running at t. On "
             "the terminating tasks (demos from the env PPO trains on) each score is multiplied by the match of the share "
             "of episodes that terminate, as grace does there. Spearman = rank correlation of the score with the true "
             "return over the policies (ties at their average rank).", ""]
    kinds = ("goal states", "every expert state", "over the horizon")
    for name, rewards in REWARDS.items():
        task = get_task(name)
        demos = load_demos(ROOT / "demos" / f"{name}.npz", task)
        data = build_offline_data(task, demos, [("random", random_negatives(task, 20, 0))])
        endings = task.demo_env is None
        discs = {"goal states": ExpertSimilarity.from_data(data, endings=endings),
                 "every expert state": ExpertSimilarity.from_data(data, endings=endings, whole_episodes=True),
                 "over the horizon": ExpertSimilarity.from_data(data, endings=endings, horizon=True)}
        lengths = [len(e.obs) - 1 for e in demos.episodes()]
        labels = ["true reward", *rewards]
        results = train_candidates(task, PPOJob((TRUE_REWARD, *rewards.values()), args.steps, args.seeds, 0,
                                                keep_trajectories=True))
        own = ", ".join(f"{k} {d.reference_likeness(data):.3f}" for k, d in discs.items())
        lines += [f"## {name}", "", f"Expert episodes: {len(lengths)}, {min(lengths)}-{max(lengths)} steps; PPO runs "
                  f"{task.max_steps} steps{'' if endings else ' and never terminates'}. The held-out experts' own "
                  f"states score: {own}.", "",
                  "| reward | true return (mean of seeds) | " + " | ".join(kinds) + " |", "|---|---|---|---|---|"]
        rets: list[float] = []
        scores: dict[str, list[float]] = {k: [] for k in kinds}
        for label, res in zip(labels, results, strict=True):
            if res.trajectories is None:
                lines.append(f"| {label} | failed: {res.error} | | | |")
                continue
            eps = list(res.trajectories.episodes())
            obs, ends = [e.obs[1:] for e in eps], [bool(e.terminated) for e in eps]
            rets.append(res.true_return_mean)
            for k, d in discs.items():
                scores[k].append(d.policy_likeness(obs, ends))
            lines.append(f"| {label} | {res.true_return_mean:.1f} | " + " | ".join(f"{scores[k][-1]:.3f}" for k in kinds) + " |")
            print(name, lines[-1], flush=True)
        lines += ["", "Spearman with the true return: " + ", ".join(f"{k} {_spearman(scores[k], rets):.2f}" for k in kinds) + ".", ""]
    (RESULTS / "horizon_likeness.md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
