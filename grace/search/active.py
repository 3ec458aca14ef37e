"""GRACE's outer loop: PPO on the current best reward; its rollouts become fresh negatives.

Training runs in a jax-profile sandbox worker (spawned; RSS watchdog; reward code reaches JAX
only through the restricted compile), never in the main process.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import Any

import numpy as np

from grace.config import ActiveConfig, EvolveConfig
from grace.data.trajectories import Episode, Trajectories
from grace.fitness.discriminator import ExpertSimilarity
from grace.fitness.ppo import run_ppo
from grace.tasks import Task
from grace.types import PPOJob, Transitions


async def collect_active_negatives(task: Task, source: str, cfg: EvolveConfig, rnd: int,
                                   data: Transitions | None = None) -> tuple[Trajectories, dict[str, Any]]:
    """Train PPO on `source`; return the trained policy's episodes and what the run measured."""
    ppo = cfg.ppo
    disc = ExpertSimilarity.from_data(data, seed=cfg.seed, max_ref=cfg.fitness.disc_max_ref) if data is not None else None
    job = PPOJob((source,), ppo.steps, ppo.seeds, cfg.seed + 7919 * rnd,
                 ppo.overrides(task.action.kind == "discrete"), score_states=disc, keep_trajectories=True)
    res = (await asyncio.to_thread(partial(run_ppo, task, job, timeout=ppo.timeout)))[0]
    if not res.ok or res.trajectories is None:
        raise RuntimeError(f"active negatives: PPO could not train on the best reward: {res.error}")
    traj = res.trajectories
    rollout_steps, threshold = traj.n_transitions, None
    if disc is not None and cfg.active.off_expert:
        traj, threshold = off_expert_segments(traj, disc, data, cfg.active.off_expert_quantile)
    held_pos = None if data is None else data["label"].astype(bool) & ~data["train"].astype(bool)
    reference = disc.likeness(data["s_next"][held_pos]) \
        if disc is not None and held_pos is not None and held_pos.any() else None
    info = {
        "env_steps": int(res.env_steps) * ppo.seeds, "episodes": traj.n_episodes,
        "rollout_transitions": rollout_steps, "kept_transitions": traj.n_transitions,
        "off_expert_threshold": threshold,
        "policy_expert_likeness": res.irl_score, "heldout_expert_likeness": reference,
        # true return: recorded for benchmarks and the report only; the search never reads it
        "true_return_mean": res.true_return_mean, "success_rate": res.success_rate,
    }
    return traj, info


def off_expert_segments(traj: Trajectories, disc: ExpertSimilarity, data: Transitions | dict[str, np.ndarray],
                        quantile: float = 0.05) -> tuple[Trajectories, float]:
    """The part of the policy's rollouts that does not look expert: transitions whose s_next is
    less expert-like than all but `quantile` of the held-out expert positives (opt-in,
    `active.off_expert`; `quantile` is active.off_expert_quantile). Motivation: once PPO imitates well, labelling all its states negative
    asks the reward to separate experts from near-experts. Measured on cartpole_fixed
    (benchmarks/results/active_rounds.md) it did NOT help: the round-1 reward trained worse than
    with the paper's rule. Kept runs of consecutive off-expert transitions become (truncated)
    episodes, so the dataset type is unchanged.
    """
    label, train = data["label"].astype(bool), data["train"].astype(bool)
    ref = data["s_next"][label & ~train] if np.any(label & ~train) else data["s_next"][label]
    threshold = float(np.quantile(disc(ref), quantile))
    eps: list[Episode] = []
    for ep in traj.episodes():
        off = disc(ep.obs[1:]) < threshold
        start = None
        for t in range(ep.length + 1):
            if t < ep.length and off[t]:
                start = t if start is None else start
            elif start is not None:
                last = t == ep.length and ep.terminated
                eps.append(Episode(ep.obs[start : t + 1], ep.actions[start:t],
                                   None if ep.rewards is None else ep.rewards[start:t], last, not last))
                start = None
    if not eps:  # the policy looks expert everywhere: keep its single least expert-like state
        ep = min(traj.episodes(), key=lambda e: float(disc(e.obs[1:]).min()))
        t = int(np.argmin(disc(ep.obs[1:])))
        eps = [Episode(ep.obs[t : t + 2], ep.actions[t : t + 1],
                       None if ep.rewards is None else ep.rewards[t : t + 1], False, True)]
    return Trajectories.from_episodes(eps, meta=dict(traj.meta, filtered="off-expert", threshold=threshold)), threshold


def needs_shaping(best_fitness: float | None, info: dict[str, Any], active: ActiveConfig | None = None) -> bool:
    """GRACE step 7: offline fitness is high (>= active.shaping_min_fitness) but the PPO policy
    on the best reward is not expert-like (below active.shaping_ratio of the held-out experts, by
    the fixed discriminator, never the true reward)."""
    active = active or ActiveConfig()
    policy, reference = info.get("policy_expert_likeness"), info.get("heldout_expert_likeness")
    if best_fitness is None or policy is None or not reference:
        return False
    return best_fitness >= active.shaping_min_fitness and policy < active.shaping_ratio * reference
