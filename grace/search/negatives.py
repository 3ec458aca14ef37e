"""Run inputs: expert demos, versioned negative sets, the offline dataset and the task context.

`RunInputs` (read with `read_run_inputs`) is the one assembly of what a run's fitness is computed
on; the loop, re-scoring (`grace eval`, `grace diff`) and the report all use it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from grace.config import DataConfig
from grace.data.trajectories import Trajectories, load_demos
from grace.proposers.base import TaskContext
from grace.search.archive import Archive
from grace.tasks import Task
from grace.types import Transitions


def file_digest(path: str | Path) -> str:
    p = Path(path)
    if not p.is_file():
        return ""
    return hashlib.sha256(p.read_bytes()).hexdigest()[:12]


def ensure_random_negatives(archive: Archive, run_dir: Path, task: Task, episodes: int, seed: int,
                            extra_files: tuple[str, ...]) -> None:
    """Negatives version 0: random-policy rollouts (persisted) plus user-given negative files, all
    of them: the first set is the version's row, the others its `extra_sets` (a version is one
    archive row; a second row for version 0 would replace the first)."""
    if archive.negatives():
        return
    from grace.data.rollout import random_negatives

    neg_dir = run_dir / "negatives"
    neg_dir.mkdir(parents=True, exist_ok=True)
    sets: list[dict[str, Any]] = []
    if episodes > 0 and (task.make_env is not None or task.demo_env is not None):
        traj = random_negatives(task, episodes, seed)
        path = traj.save(neg_dir / "random.npz")
        sets.append({"source": "random", "path": str(path.relative_to(run_dir)), "episodes": traj.n_episodes,
                     "transitions": traj.n_transitions})
    for i, f in enumerate(extra_files):
        traj = load_demos(f, task)
        sets.append({"source": f"file:{Path(f).name}#{i}", "path": str(Path(f).resolve()),
                     "episodes": traj.n_episodes, "transitions": traj.n_transitions})
    if sets:
        first = sets[0]
        archive.add_negatives(0, first["path"], first["source"], first["episodes"], first["transitions"],
                              {"extra_sets": sets[1:]} if len(sets) > 1 else None)


def negative_sets(archive: Archive, run_dir: Path, task: Task, up_to: int) -> list[tuple[str, Trajectories]]:
    """(source tag, trajectories) of every negative set up to version `up_to`, with the sets a
    version lists in its info as `extra_sets` (the adversarial probe's, grace/search/probe.py)."""
    out = []
    for row in archive.negatives():
        if row["version"] <= up_to:
            for source, rel in [(row["source"], row["path"]),
                                *((e["source"], e["path"]) for e in row["info"].get("extra_sets", []))]:
                path = Path(rel) if Path(rel).is_absolute() else run_dir / rel
                out.append((source, load_demos(path, task)))
    return out


def negatives_version(archive: Archive) -> int:
    rows = archive.negatives()
    return max((r["version"] for r in rows), default=0)


def state_dict(row: np.ndarray, task: Task) -> dict[str, Any]:
    """A state as proposers see it: {field: value}, 4 decimals."""
    return task.schema.state_dict(row, digits=4)


def task_context(task: Task, data: Transitions, n_examples: int = 6, seed: int = 0) -> TaskContext:
    """What proposers may see: description, schema, a few states of each class, field statistics."""
    rng = np.random.default_rng(seed)
    train = data["train"].astype(bool)
    s_next, label = data["s_next"][train], data["label"][train].astype(bool)
    pos, neg = s_next[label], s_next[~label]
    pick = lambda arr: arr[rng.choice(len(arr), size=min(n_examples, len(arr)), replace=False)] if len(arr) else arr  # noqa: E731
    stats: dict[str, dict[str, float]] = {}
    for f in task.schema.fields:
        sl = task.schema.slices[f.name]
        col = lambda a: (a[:, sl.start] if f.size == 1 else np.linalg.norm(a[:, sl], axis=-1))  # noqa: E731,B023
        entry: dict[str, float] = {}
        for tag, arr in (("pos", pos), ("neg", neg)):
            if len(arr):
                c = col(arr)
                entry |= {f"{tag}_mean": float(c.mean()), f"{tag}_std": float(c.std()),
                          f"{tag}_min": float(c.min()), f"{tag}_max": float(c.max())}
        stats[f.name] = entry
    derived = (task.schema.derived_values(pos), task.schema.derived_values(neg)) if task.schema.derived else ()
    for d in task.schema.derived:
        entry = {}
        for tag, values in zip(("pos", "neg"), derived, strict=True):
            c = values[d.name]
            if len(c):
                entry |= {f"{tag}_mean": float(c.mean()), f"{tag}_std": float(c.std()),
                          f"{tag}_min": float(c.min()), f"{tag}_max": float(c.max())}
        stats[d.name] = entry
    return TaskContext(
        name=task.name, description=task.description, schema=task.schema, action=task.action,
        kind=task.kind, expert_states=[state_dict(r, task) for r in pick(pos)],
        negative_states=[state_dict(r, task) for r in pick(neg)], stats=stats,
    )


def shaping_trajectories(task: Task, data: Transitions, episodes: int = 12, states: int = 100
                         ) -> list[dict[str, Any]]:
    """Whole train-split episodes for the potential search of a shaping step: up to `episodes`
    expert episodes and as many random-policy ones (other negatives when there are none), each
    with up to `states` of its states (evenly spaced) and their time steps: [{"label":
    "expert" | "negative", "states": [{field: value}], "steps": [...], "terminated": bool}]."""
    train, names = data["train"].astype(bool), list(data["source_names"])
    random = [i for i, n in enumerate(names) if n == "random"]
    kinds = (("expert", data["source"] == 0),
             ("negative", np.isin(data["source"], random) if random else data["source"] != 0))
    out: list[dict[str, Any]] = []
    for label, rows in kinds:
        rows = np.flatnonzero(rows & train)
        for ep in np.unique(data["episode"][rows])[:episodes]:
            idx = rows[data["episode"][rows] == ep]
            idx = idx[np.argsort(data["step"][idx], kind="stable")]
            idx = idx[np.unique(np.linspace(0, len(idx) - 1, min(states, len(idx))).astype(int))]
            out.append({"label": label, "states": [state_dict(r, task) for r in data["s_next"][idx]],
                        "steps": [int(t) + 1 for t in data["step"][idx]],
                        "terminated": bool(data["terminal"][rows][data["episode"][rows] == ep].any())})
    return out


def return_range(demos: Trajectories, negatives: list[tuple[str, Trajectories]]) -> tuple[float, float]:
    """(R_random, R_expert): mean true episode return of random rollouts and of the demos
    (only `--fitness ppo-true`, reward-design mode, reads this)."""
    expert = demos.returns()
    rand = [t.returns() for tag, t in negatives if tag == "random" and t.returns() is not None]
    hi = float(np.mean(expert)) if expert is not None else 1.0
    lo = float(np.mean(np.concatenate(rand))) if rand else 0.0
    return lo, hi


def goal_candidates(demos: Trajectories, task: Task, per_episode: int = 3, seed: int = 0
                    ) -> tuple[list[dict[str, Any]], list[list[int]]]:
    """Expert states an LLM may label as goals (GRACE step 1): every episode's final state plus
    a few earlier ones; keys are (episode, step) of the transition whose s_next it is."""
    rng = np.random.default_rng(seed)
    cands, keys = [], []
    for i, ep in enumerate(demos.episodes()):
        steps = {ep.length - 1} | set(rng.choice(ep.length, size=min(per_episode, ep.length), replace=False).tolist())
        for t in sorted(steps):
            cands.append({"state": state_dict(ep.obs[t + 1], task)})
            keys.append([i, int(t)])
    return cands, keys


def goal_selector(labels: list[list[int]] | None):
    """A positive-state selector from persisted (episode, step) goal labels; None = task default."""
    if not labels:
        return None
    wanted = {(int(e), int(t)) for e, t in labels}

    def select(traj: Trajectories) -> np.ndarray:
        tr = traj.transitions()
        return np.array([(int(e), int(t)) in wanted for e, t in zip(tr["episode"], tr["step"], strict=True)])

    return select



@dataclass(frozen=True)
class RunInputs:
    """What a run's fitness is computed on: the task, the expert demos, the negative sets up to
    `version` and the persisted goal labels (GRACE step 1), if any."""

    task: Task
    demos: Trajectories
    negatives: list[tuple[str, Trajectories]]
    version: int = 0
    goal_labels: list[list[int]] | None = None

    def dataset(self, data: DataConfig, seed: int) -> Transitions:
        """The labelled transitions (train / held-out split by `data.holdout`, each class capped at
        `data.max_per_class`, deterministic in `seed`)."""
        from grace.data.dataset import build_offline_data

        return build_offline_data(self.task, self.demos, self.negatives, holdout=data.holdout, seed=seed,
                                  max_per_class=data.max_per_class, selector=goal_selector(self.goal_labels),
                                  reached=data.reached_goal)


def read_run_inputs(archive: Archive, run_dir: Path, task: Task, demos: Trajectories,
                    version: int | None = None) -> RunInputs:
    """The run's inputs: every negative set up to `version` (default: the latest), and goal labels."""
    version = negatives_version(archive) if version is None else version
    return RunInputs(task, demos, negative_sets(archive, run_dir, task, version), version,
                     archive.get_meta("goal_labels"))
