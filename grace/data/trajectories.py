"""Trajectory datasets: one type, read/written as grace npz, imitation npz or Minari; also read
from D4RL-style flat arrays (npz, HDF5) and imitation's HuggingFace folder (grace.data.formats).

Layout (episodes concatenated): episode i has T_i transitions and T_i + 1 observations.
- obs:         (sum(T_i + 1), obs_dim) float
- actions:     (sum(T_i),) int for discrete tasks, (sum(T_i), act_dim) float otherwise
- rewards:     (sum(T_i),) float or None (true rewards; only benchmarks read them)
- lengths:     (n_episodes,) T_i
- terminated:  (n_episodes,) the episode ended by a terminal state (e.g. the goal was reached)
- truncated:   (n_episodes,) the episode was cut by a time limit
- meta:        provenance (task, expert, seed, returns, ...)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grace.data.demo_files import DEFAULT_MAX_MB, MAX_MB, DemoError
from grace.data.formats import DemoArrays, check_arrays, read_demo_file
from grace.tasks import SchemaError, Task

__all__ = ["DemoError", "Episode", "Trajectories", "load_demos", "load_minari", "save_minari", "summarise"]

ACTION_MARGIN = 1.0
"""Continuous actions further outside [low, high] than this many times (high - low) are refused:
such demos were recorded for another task or in other units. Closer ones are accepted (envs clip)
and counted in meta["actions_outside_bounds"]."""


@dataclass
class Episode:
    obs: np.ndarray  # (T + 1, obs_dim)
    actions: np.ndarray  # (T,) or (T, act_dim)
    rewards: np.ndarray | None
    terminated: bool
    truncated: bool

    @property
    def length(self) -> int:
        return len(self.actions)


@dataclass
class Trajectories:
    obs: np.ndarray
    actions: np.ndarray
    lengths: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    rewards: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lengths = np.asarray(self.lengths, dtype=np.int64)
        self.terminated = np.asarray(self.terminated, dtype=bool)
        self.truncated = np.asarray(self.truncated, dtype=bool)
        n_trans, n_eps = int(self.lengths.sum()), len(self.lengths)
        if len(self.obs) != n_trans + n_eps:
            raise DemoError(f"obs has {len(self.obs)} rows; episodes need sum(T_i + 1) = {n_trans + n_eps}")
        if len(self.actions) != n_trans:
            raise DemoError(f"actions has {len(self.actions)} rows; episodes need sum(T_i) = {n_trans}")
        if self.rewards is not None and len(self.rewards) != n_trans:
            raise DemoError(f"rewards has {len(self.rewards)} rows; expected {n_trans}")
        if len(self.terminated) != n_eps or len(self.truncated) != n_eps:
            raise DemoError("terminated/truncated need one flag per episode")

    # -- construction ----------------------------------------------------------------------
    @classmethod
    def from_episodes(cls, episodes: list[Episode], meta: dict[str, Any] | None = None) -> Trajectories:
        if not episodes:
            raise DemoError("no episodes")
        has_rew = all(e.rewards is not None for e in episodes)
        return cls(
            obs=np.concatenate([e.obs for e in episodes]).astype(np.float32),
            actions=np.concatenate([e.actions for e in episodes]),
            lengths=np.array([e.length for e in episodes]),
            terminated=np.array([e.terminated for e in episodes]),
            truncated=np.array([e.truncated for e in episodes]),
            rewards=np.concatenate([e.rewards for e in episodes]).astype(np.float32) if has_rew else None,
            meta=dict(meta or {}),
        )

    # -- access ----------------------------------------------------------------------------
    @property
    def n_episodes(self) -> int:
        return len(self.lengths)

    @property
    def n_transitions(self) -> int:
        return int(self.lengths.sum())

    @property
    def obs_dim(self) -> int:
        return int(self.obs.shape[1])

    def _offsets(self) -> tuple[np.ndarray, np.ndarray]:
        act_start = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        obs_start = act_start + np.arange(self.n_episodes)
        return obs_start, act_start

    def episodes(self) -> Iterator[Episode]:
        obs_start, act_start = self._offsets()
        for i, n in enumerate(self.lengths):
            o, a = obs_start[i], act_start[i]
            yield Episode(
                obs=self.obs[o : o + n + 1], actions=self.actions[a : a + n],
                rewards=None if self.rewards is None else self.rewards[a : a + n],
                terminated=bool(self.terminated[i]), truncated=bool(self.truncated[i]),
            )

    def transitions(self) -> dict[str, np.ndarray]:
        """Flat (s, a, s_next) arrays plus the episode index, step and last-step flag of each."""
        obs_start, _ = self._offsets()
        ep = np.repeat(np.arange(self.n_episodes), self.lengths)
        step = np.arange(self.n_transitions) - np.repeat(np.concatenate([[0], np.cumsum(self.lengths)[:-1]]), self.lengths)
        s_idx = obs_start[ep] + step
        last = step == (self.lengths[ep] - 1)
        return {
            "s": self.obs[s_idx], "a": self.actions, "s_next": self.obs[s_idx + 1],
            "episode": ep, "step": step, "last": last,
            "terminal": last & self.terminated[ep],
        }

    def returns(self) -> np.ndarray | None:
        if self.rewards is None:
            return None
        _, act_start = self._offsets()
        return np.add.reduceat(self.rewards, act_start) if self.n_transitions else np.zeros(0)

    def select(self, indices: list[int] | np.ndarray) -> Trajectories:
        eps = list(self.episodes())
        return Trajectories.from_episodes([eps[i] for i in indices], meta=self.meta)

    def validate(self, task: Task, source: str = "demos") -> Trajectories:
        """Check the arrays against `task`: observation width, action shape, kind and range."""
        try:
            task.schema.check(self.obs, f"{source} observations")
            task.action.check(np.asarray(self.actions))
        except SchemaError as exc:
            raise DemoError(f"{source}: {exc}") from None
        if not np.all(np.isfinite(self.obs)):
            raise DemoError(f"{source}: observations contain NaN or inf")
        acts = np.asarray(self.actions)
        if acts.dtype.kind not in "biuf" or (acts.dtype.kind == "f" and not np.all(np.isfinite(acts))):
            raise DemoError(f"{source}: actions must be finite numbers, got dtype {acts.dtype}")
        if task.action.kind == "discrete":
            self.actions = _discrete_actions(acts, task.action.n, source)
        else:
            self._check_bounds(acts, task.action.low, task.action.high, source)
        return self

    def _check_bounds(self, acts: np.ndarray, low: float, high: float, source: str) -> None:
        if not len(acts):
            return
        margin = ACTION_MARGIN * (high - low)
        far = (acts < low - margin) | (acts > high + margin)
        if far.any():
            row = int(np.flatnonzero(far.reshape(len(acts), -1).any(axis=1))[0])
            raise DemoError(
                f"{source}: action {acts[row].tolist()} at row {row} is far outside the task's "
                f"bounds [{low:g}, {high:g}] (demos of another task, or other units?)"
            )
        outside = int(((acts < low) | (acts > high)).sum())
        if outside:
            self.meta["actions_outside_bounds"] = outside

    # -- files -----------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arrays = {
            "obs": self.obs, "actions": self.actions, "lengths": self.lengths,
            "terminated": self.terminated, "truncated": self.truncated,
            "meta_json": np.array(json.dumps(self.meta, default=str)),
        }
        if self.rewards is not None:
            arrays["rewards"] = self.rewards
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path

    def save_imitation(self, path: str | Path) -> Path:
        """imitation's npz layout: obs, acts, terminal, indices, rews, infos."""
        path = Path(path)
        arrays = {
            "obs": self.obs, "acts": self.actions, "terminal": self.terminated,
            "indices": np.cumsum(self.lengths)[:-1],
            "infos": np.array([None] * self.n_episodes, dtype=object),
        }
        if self.rewards is not None:
            arrays["rews"] = self.rewards
        with open(path, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        return path


def load_demos(path: str | Path, task: Task | None = None, max_mb: float = DEFAULT_MAX_MB) -> Trajectories:
    """Read demos: a grace npz, an imitation npz, D4RL-style flat arrays (npz or HDF5),
    imitation's HuggingFace `datasets` folder, or a Minari dataset (`minari:<dataset_id>`).
    The layout is detected from the file; every array is checked, and nothing over `max_mb`
    MiB (uncompressed) is inflated. Errors are `DemoError`."""
    token = MAX_MB.set(float(max_mb))
    try:
        return _load_demos(str(path), task)
    finally:
        MAX_MB.reset(token)


def _load_demos(spec: str, task: Task | None) -> Trajectories:
    if spec.startswith("minari:"):
        traj = load_minari(spec.removeprefix("minari:"))
        check_arrays(DemoArrays(traj.obs, traj.actions, traj.lengths, traj.terminated,
                                traj.truncated, traj.rewards), spec)
    else:
        arrays = read_demo_file(Path(spec))
        traj = Trajectories(
            obs=arrays.obs, actions=arrays.actions, lengths=arrays.lengths,
            terminated=arrays.terminated, truncated=arrays.truncated, rewards=arrays.rewards,
            meta=arrays.meta,
        )
    if task is not None:
        traj.validate(task, source=spec)
    return traj


def _discrete_actions(acts: np.ndarray, n: int, source: str) -> np.ndarray:
    """Whole numbers in 0..n-1 (n = 0: no upper bound known), as int64."""
    if acts.dtype.kind == "f":
        frac = acts != np.round(acts)
        if frac.any():
            row = int(np.flatnonzero(frac)[0])
            raise DemoError(f"{source}: discrete action {acts[row]:g} at row {row} is not a whole number")
    acts = acts.astype(np.int64)
    bad = (acts < 0) | (acts >= n) if n > 0 else acts < 0
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        allowed = f"0..{n - 1} (the task has {n} actions)" if n > 0 else ">= 0"
        raise DemoError(f"{source}: discrete action {acts[row]} at row {row} is outside {allowed}")
    return acts


def _minari():
    try:
        import minari
    except ImportError:
        raise DemoError("Minari datasets need the `minari` extra: pip install 'grace[minari]'") from None
    return minari


def load_minari(dataset_id: str) -> Trajectories:
    minari = _minari()
    try:
        ds = minari.load_dataset(dataset_id)
    except Exception as exc:  # minari raises several types for a missing dataset
        raise DemoError(f"cannot load Minari dataset {dataset_id!r}: {exc}") from None
    eps = []
    for e in ds.iterate_episodes():
        eps.append(Episode(
            obs=np.asarray(e.observations, dtype=np.float32), actions=np.asarray(e.actions),
            rewards=np.asarray(e.rewards, dtype=np.float32),
            terminated=bool(np.asarray(e.terminations)[-1]), truncated=bool(np.asarray(e.truncations)[-1]),
        ))
    return Trajectories.from_episodes(eps, meta={"format": "minari", "dataset_id": dataset_id})


def save_minari(traj: Trajectories, dataset_id: str, task: Task) -> str:
    """Write a Minari dataset (in the local Minari root) from trajectories of `task`."""
    minari = _minari()
    from minari.data_collector import EpisodeBuffer

    buffers = []
    for ep in traj.episodes():
        n = ep.length
        term = np.zeros(n, bool)
        trunc = np.zeros(n, bool)
        term[-1], trunc[-1] = ep.terminated, ep.truncated
        buffers.append(EpisodeBuffer(
            observations=ep.obs, actions=ep.actions,
            rewards=ep.rewards if ep.rewards is not None else np.zeros(n, np.float32),
            terminations=term, truncations=trunc,
        ))
    env = task.make_env() if task.make_env else None
    minari.create_dataset_from_buffers(
        dataset_id=dataset_id, buffer=buffers, env=env, algorithm_name=str(traj.meta.get("expert", "grace")),
        observation_space=env.observation_space if env else None,
        action_space=env.action_space if env else None,
    )
    return dataset_id


def summarise(traj: Trajectories) -> dict[str, Any]:
    rets = traj.returns()
    return {
        "episodes": traj.n_episodes, "transitions": traj.n_transitions, "obs_dim": traj.obs_dim,
        "length_mean": float(np.mean(traj.lengths)), "length_min": int(np.min(traj.lengths)),
        "length_max": int(np.max(traj.lengths)),
        "terminated": int(traj.terminated.sum()), "truncated": int(traj.truncated.sum()),
        "return_mean": None if rets is None else float(np.mean(rets)),
        "return_std": None if rets is None else float(np.std(rets)),
        "meta": traj.meta,
    }
