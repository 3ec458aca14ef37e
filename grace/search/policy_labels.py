"""GRACE step 1 on policy data (`active.llm_labels`): the proposer (an LLM) labels short segments of
the rollouts of PPO on the current best reward as expert-like (D+) or not (D-); the expert-like
segments are cut out of the round's negatives, the rest stay (cut into runs as the off-expert
filter cuts them, grace/search/off_expert.py, so the dataset type is unchanged).

Each of `active.llm_label_episodes` episodes (spread over the rollouts) is cut into
`active.llm_label_segments` equal segments; the prompt shows one state per segment (its middle
transition's s_next) with the best reward's value there and its mean over the segment (scored in
the sandbox; the rollouts' own rewards are the env's and never shown). Episodes not shown stay
negative. The labels are persisted (archive meta `policy_labels_r<round>`) before they are used, so
a resumed run reuses them without asking again; no labels (a proposer that does not label, a reply
that cannot be parsed) keep today's rule, with a warning line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grace.config import EvolveConfig
from grace.data.trajectories import Episode, Trajectories
from grace.proposers.base import Proposer, TaskContext
from grace.search import negatives as rundata
from grace.search.archive import Archive
from grace.search.executor import Executor
from grace.search.off_expert import kept_runs
from grace.tasks import Task

Segment = tuple[int, int, int]
"""(episode, first transition, end): transitions [first, end) of one rollout episode."""


def meta_key(rnd: int) -> str:
    """The archive meta key of round `rnd`'s labels."""
    return f"policy_labels_r{rnd}"


def candidate_segments(traj: Trajectories, episodes: int, per_episode: int) -> list[Segment]:
    """`per_episode` equal segments of each of `episodes` episodes spread evenly over `traj`."""
    lengths = traj.lengths.tolist()
    chosen = np.unique(np.linspace(0, len(lengths) - 1, min(episodes, len(lengths))).astype(int))
    out = []
    for e in chosen.tolist():
        bounds = np.unique(np.linspace(0, lengths[e], min(per_episode, lengths[e]) + 1).astype(int)).tolist()
        out += [(e, a, b) for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]
    return out


async def candidates(traj: Trajectories, segments: list[Segment], task: Task, source: str,
                     executor: Executor) -> list[dict[str, Any]]:
    """The prompt's states: one per segment (its middle transition's s_next) with `source`'s reward
    there and its mean over the segment (None where the program fails in the sandbox)."""
    if not segments:
        return []
    eps = list(traj.episodes())
    idx = [(e, t) for e, a, b in segments for t in range(a, b)]
    batch = {"s": np.stack([eps[e].obs[t] for e, t in idx]), "a": np.stack([eps[e].actions[t] for e, t in idx]),
             "s_next": np.stack([eps[e].obs[t + 1] for e, t in idx])}
    scored = await executor.rewards(source, batch)
    rewards = None if scored is None else np.asarray(scored, dtype=np.float64).reshape(-1)
    out, at = [], 0
    for e, a, b in segments:
        mid = (a + b - 1) // 2
        seg = None if rewards is None else rewards[at : at + b - a]
        out.append({"state": rundata.state_dict(eps[e].obs[mid + 1], task), "episode": e, "steps": [a, b - 1],
                    "reward": None if seg is None else round(float(seg[mid - a]), 4),
                    "mean_reward": None if seg is None else round(float(seg.mean()), 4)})
        at += b - a
    return out


def without_segments(traj: Trajectories, segments: list[Segment]) -> tuple[Trajectories, int]:
    """`traj` with `segments` cut out (runs of what is left, as truncated episodes) and the number of
    transitions removed. When nothing would be left, the first segment's first transition stays
    (a negative set is never empty)."""
    eps = list(traj.episodes())
    keep = [np.ones(ep.length, bool) for ep in eps]
    for e, a, b in segments:
        if 0 <= e < len(eps):
            keep[e][max(0, a) : min(b, eps[e].length)] = False
    kept = [run for ep, k in zip(eps, keep, strict=True) for run in kept_runs(ep, k)]
    removed = traj.n_transitions - sum(run.length for run in kept)
    if not kept:
        e, a, _ = segments[0]
        ep = eps[e]
        kept = [Episode(ep.obs[a : a + 2], ep.actions[a : a + 1], None if ep.rewards is None else ep.rewards[a : a + 1],
                        False, True)]
        removed -= 1
    return Trajectories.from_episodes(kept, meta=dict(traj.meta, filtered="llm-labels")), removed


async def label_round(archive: Archive, task: Task, cfg: EvolveConfig, rnd: int, source: str, traj: Trajectories,
                      proposer: Proposer, ctx: TaskContext, executor: Executor,
                      say: Callable[[str], None]) -> tuple[Trajectories, dict[str, Any]]:
    """Round `rnd`'s PPO rollouts `traj` without the segments the proposer calls expert-like, and
    what happened (the PPO set's `info["policy_labels"]`). The labels come from the archive when
    this round has them (a resumed run), else from the proposer, persisted before they are used."""
    stored = archive.get_meta(meta_key(rnd))
    reused = stored is not None
    if stored is None:
        segments = candidate_segments(traj, cfg.active.llm_label_episodes, cfg.active.llm_label_segments)
        cands = await candidates(traj, segments, task, source, executor)
        chosen = await proposer.label_policy(ctx, cands, cfg.seed + 7919 * rnd) if cands else []
        stored = {"segments": [list(s) for s in segments], "expert_like": chosen, "candidates": len(cands)}
        archive.set_meta(meta_key(rnd), stored)
    segments = [(int(e), int(a), int(b)) for e, a, b in stored["segments"]]
    chosen = stored["expert_like"]
    info: dict[str, Any] = {"candidates": len(segments), "expert_like": chosen, "reused": reused, "removed": 0,
                            "transitions": traj.n_transitions}
    if chosen is not None:
        picked = [segments[i] for i in chosen if 0 <= i < len(segments)]
        traj, info["removed"] = without_segments(traj, picked) if picked else (traj, 0)
    say(summary(info))
    return traj, info


def summary(info: dict[str, Any]) -> str:
    """One line on a round's policy labels (progress, the report)."""
    if info.get("expert_like") is None:
        return ("warning: policy labels: the proposer gave no usable labels (it does not label, or its reply "
                "could not be parsed); every state of PPO's rollouts stays negative")
    return (f"policy labels: {len(info['expert_like'])} of {info['candidates']} segments of PPO's rollouts look "
            f"expert-like; {info['removed']} of {info.get('transitions', '?')} transitions are not negatives"
            + (" (labels reused)" if info.get("reused") else ""))
