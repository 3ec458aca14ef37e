"""Which states do not look expert: the threshold of the candidate-independent discriminator
(`grace.fitness.discriminator.ExpertSimilarity`) and the off-expert runs of a rollout, for active
negatives (`active.off_expert`, grace/search/active.py) and the adversarial probe
(grace/search/probe.py)."""

from __future__ import annotations

import numpy as np

from grace.data.trajectories import Episode, Trajectories
from grace.fitness.discriminator import ExpertSimilarity
from grace.types import Transitions


def expert_threshold(disc: ExpertSimilarity, data: Transitions | dict[str, np.ndarray], quantile: float = 0.05) -> float:
    """The expert-likeness below which a state is off-expert: the `quantile` of the held-out expert
    positives'. With none held out (one demo) the positives are scored leave-one-out (each against
    the others: scored against themselves they would all be 1, and every other state off-expert)."""
    label, train = data["label"].astype(bool), data["train"].astype(bool)
    if np.any(label & ~train):
        return float(np.quantile(disc(data["s_next"][label & ~train]), quantile))
    return float(np.quantile(_leave_one_out(disc, data["s_next"][label]), quantile))


def _leave_one_out(disc: ExpertSimilarity, states: np.ndarray) -> np.ndarray:
    """`disc`'s score of each state with its own copy in the reference set left out."""
    x = ((np.asarray(states, np.float64) - disc.mean) / disc.scale).astype(np.float32)
    best = np.full(len(x), np.inf, dtype=np.float32)
    for start in range(0, len(disc.ref), 512):
        ref = disc.ref[start : start + 512]
        d2 = (x * x).sum(1)[:, None] - 2.0 * x @ ref.T + (ref * ref).sum(1)[None, :]
        same = d2 <= 1e-4 * (1.0 + (x * x).sum(1))[:, None]  # itself, up to float32 rounding
        best = np.minimum(best, np.where(same, np.inf, d2).min(axis=1))
    best = np.where(np.isfinite(best), best, 0.0)  # a lone state: as expert-like as it gets
    return np.exp(-np.maximum(best, 0.0) / x.shape[1])


def off_expert_segments(traj: Trajectories, disc: ExpertSimilarity, data: Transitions | dict[str, np.ndarray],
                        quantile: float = 0.05, keep_one: bool = True) -> tuple[Trajectories | None, float]:
    """The part of the policy's rollouts that does not look expert: transitions whose s_next is
    less expert-like than all but `quantile` of the held-out expert positives (opt-in,
    `active.off_expert`; `quantile` is active.off_expert_quantile). Motivation: once PPO imitates well, labelling all its states negative
    asks the reward to separate experts from near-experts. Measured on cartpole_fixed
    (benchmarks/results/active_rounds.md) it did NOT help: the round-1 reward trained worse than
    with the paper's rule. Kept runs of consecutive off-expert transitions become (truncated)
    episodes, so the dataset type is unchanged. When nothing is off-expert: the single least
    expert-like state with `keep_one`, else None (the adversarial probe, grace/search/probe.py).
    """
    threshold = expert_threshold(disc, data, quantile)
    eps = [run for ep in traj.episodes() for run in kept_runs(ep, disc(ep.obs[1:]) < threshold)]
    if not eps and not keep_one:
        return None, threshold
    if not eps:  # the policy looks expert everywhere: keep its single least expert-like state
        ep = min(traj.episodes(), key=lambda e: float(disc(e.obs[1:]).min()))
        t = int(np.argmin(disc(ep.obs[1:])))
        eps = [Episode(ep.obs[t : t + 2], ep.actions[t : t + 1],
                       None if ep.rewards is None else ep.rewards[t : t + 1], False, True)]
    return Trajectories.from_episodes(eps, meta=dict(traj.meta, filtered="off-expert", threshold=threshold)), threshold


def kept_runs(ep: Episode, keep: np.ndarray) -> list[Episode]:
    """The runs of consecutive transitions of `ep` where `keep` (one flag per transition) holds, each
    a (truncated) episode; a run that ends the episode keeps its termination."""
    out, start = [], None
    for t in range(ep.length + 1):
        if t < ep.length and keep[t]:
            start = t if start is None else start
        elif start is not None:
            last = t == ep.length and ep.terminated
            out.append(Episode(ep.obs[start : t + 1], ep.actions[start:t],
                               None if ep.rewards is None else ep.rewards[start:t], last, not last))
            start = None
    return out
