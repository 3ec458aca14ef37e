"""The labelled dataset: the ONE builder of labelled transitions (loop, rescoring, report).

`build_offline_data` turns expert demos and negative datasets into one `grace.types.Transitions`
record (shipped once to every sandbox worker; its docstring lists the arrays).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grace.data.trajectories import Trajectories
from grace.tasks import Task
from grace.types import EXPERT, Transitions

Selector = Callable[[Trajectories], np.ndarray]
REACHED_GOAL = ("negative", "drop", "positive")
"""What a goal task's negative episode that reached the goal does with its goal transition
(`data.reached_goal`): stays a negative (the first wave's behaviour), is dropped, or is a positive."""


def reached_goal(task: Task, traj: Trajectories) -> np.ndarray:
    """Per episode: did it reach the goal? It terminated: the same rule that makes an expert
    episode's final state a goal positive. The task's success verifier is not read: it is for
    benchmarks only (`Task.success`), and the search never sees what the env says of success."""
    return traj.terminated.astype(bool).copy()


def _holdout_episodes(n: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ~frac of n episodes (at least one when n >= 2 and frac > 0, never all)."""
    if n < 2 or frac <= 0:
        return np.zeros(0, np.int64)
    k = min(n - 1, max(1, int(round(frac * n))))
    return np.sort(rng.choice(n, size=k, replace=False))


def _actions(actions: np.ndarray, task: Task) -> np.ndarray:
    a = np.asarray(actions)
    if task.action.kind == "discrete":
        return a.reshape(len(a)).astype(np.int64)
    return a.reshape(len(a), -1).astype(np.float32)


def build_offline_data(
    task: Task,
    demos: Trajectories,
    negatives: list[tuple[str, Trajectories]],
    holdout: float = 0.25,
    seed: int = 0,
    max_per_class: int = 20000,
    selector: Selector | None = None,
    reached: str = "negative",
) -> Transitions:
    """Label transitions as S_e / S_n, split whole episodes into train / held-out, subsample.

    - S_e: goal tasks: transitions reaching the final state of an expert episode that ended by
      termination; keep-alive tasks: every expert transition. `selector(demos)` (a bool per
      expert transition) overrides this.
    - S_n: every other expert transition plus all transitions of each negative dataset
      (`(source_tag, trajectories)`, e.g. ("random", ...), ("ppo-r1", ...), ("file:x.npz", ...)).
      Goal tasks: a negative episode that reached the goal (`reached_goal`; random BabyAI
      episodes often do) keeps its goal transition as a negative (`reached="negative"`), drops
      it ("drop") or labels it positive ("positive"); its other transitions stay negatives.
    - Held-out: ~`holdout` of the expert episodes (stratified by whether they contain
      positives, so held-out goal states exist when >= 2 episodes have one) and the same
      fraction of each negative dataset's episodes. One keep-alive demo: its last `holdout` of
      steps (the episode is then split: returns are ranked on whole episodes only).
    - Each class is subsampled to `max_per_class` transitions (deterministic in `seed`); the
      fitness weights the classes equally, so the few goal positives are not drowned out.
    """
    if reached not in REACHED_GOAL:
        raise ValueError(f"reached must be one of {REACHED_GOAL}, not {reached!r}")
    rng = np.random.default_rng(seed)
    tr = demos.transitions()
    if selector is not None:
        pos = np.asarray(selector(demos), dtype=bool)
        if pos.shape != (demos.n_transitions,):
            raise ValueError(f"selector returned shape {pos.shape}; expected ({demos.n_transitions},)")
    elif task.kind == "goal":
        pos = tr["terminal"].astype(bool)
    else:
        pos = np.ones(demos.n_transitions, bool)
    if not pos.any():
        raise ValueError(
            f"no positive (expert/goal) transitions in the demos of task {task.name!r}: "
            "a goal task needs at least one expert episode that ended by termination"
        )
    ep_has_pos = np.bincount(tr["episode"], weights=pos, minlength=demos.n_episodes) > 0
    held = np.zeros(demos.n_episodes, bool)
    for group in (np.flatnonzero(ep_has_pos), np.flatnonzero(~ep_has_pos)):
        held[group[_holdout_episodes(len(group), holdout, rng)]] = True
    if demos.n_episodes >= 2 and holdout > 0 and not held.any():
        held[rng.integers(demos.n_episodes)] = True
    train = ~held[tr["episode"]]
    if demos.n_episodes == 1 and holdout > 0 and pos.all() and demos.n_transitions >= 2:
        # One keep-alive demo: no episode to hold out, so its last `holdout` of steps are (a time
        # block, not random steps, whose neighbours would be in train): held-out fitness then still
        # tells a reward that generalises from one that memorised (issue "Few demos", item 4).
        k = min(demos.n_transitions - 1, max(1, int(round(holdout * demos.n_transitions))))
        train = tr["step"] < np.sort(tr["step"])[demos.n_transitions - k]

    names = [EXPERT]
    parts: list[dict[str, np.ndarray]] = [{
        "s": tr["s"], "a": _actions(tr["a"], task), "s_next": tr["s_next"], "label": pos,
        "train": train, "episode": tr["episode"], "step": tr["step"],
        "source": np.zeros(demos.n_transitions, np.int64), "terminal": tr["terminal"].astype(bool),
    }]
    offset = demos.n_episodes
    for tag, traj in negatives:
        t = traj.transitions()
        held_n = np.zeros(traj.n_episodes, bool)
        held_n[_holdout_episodes(traj.n_episodes, holdout, rng)] = True
        if tag in names:
            raise ValueError(f"negative source tag {tag!r} is used twice (or is reserved)")
        names.append(tag)
        label, rows = np.zeros(traj.n_transitions, bool), np.ones(traj.n_transitions, bool)
        if task.kind == "goal" and reached != "negative":
            goal = t["terminal"].astype(bool) & reached_goal(task, traj)[t["episode"]]
            label, rows = (goal, rows) if reached == "positive" else (label, ~goal)
        part = {
            "s": t["s"], "a": _actions(t["a"], task), "s_next": t["s_next"],
            "label": label, "train": ~held_n[t["episode"]],
            "episode": t["episode"] + offset, "step": t["step"],
            "source": np.full(traj.n_transitions, len(names) - 1, np.int64),
            "terminal": t["terminal"].astype(bool),
        }
        parts.append({k: v[rows] for k, v in part.items()})
        offset += traj.n_episodes
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    keep = np.zeros(len(data["label"]), bool)
    for cls in (True, False):
        idx = np.flatnonzero(data["label"] == cls)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False)
        keep[idx] = True
    return Transitions.from_arrays(names, **{k: v[keep] for k, v in data.items()})
