"""Records that cross folders: frozen, self-checking (in the spirit of imitation's `data/types.py`
and brax's `training/types.py`).

- `Transitions`: the labelled dataset (`grace.data.dataset.build_offline_data`), shipped once to
  every sandbox worker and read by the fitness code.
- `Example`, `EvalResult`: what one evaluation of one reward program found; the same record goes
  from the worker to the archive (`to_dict`) and back to a proposer's prompt.
- `PPOJob`, `PPOResult`: one batched PPO training request and its per-candidate result.
- `TaskRef`: how a task reaches a worker (a built-in name, a TOML path, or a picklable Task).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from grace.data.trajectories import Trajectories
from grace.tasks import Task, get_task

EXPERT = "expert"
"""`Transitions.source_names[0]`: the expert demos."""
PARTIAL_PREFIX = "probe-"
"""Negative sets whose tag starts so hold partial episodes (the adversarial probe's off-expert
segments, grace/search/probe.py): their states count in the discrimination, but the episode-return
ranking and the terminal value, which compare whole episodes, skip them."""


def whole_episode_rows(data: Mapping[str, Any]) -> np.ndarray:
    """Rows of `data` (Transitions' columns) that belong to whole episodes: not from a
    `PARTIAL_PREFIX` source."""
    partial = [i for i, n in enumerate(data.get("source_names", ())) if str(n).startswith(PARTIAL_PREFIX)]
    return ~np.isin(data["source"], partial)


# -- the labelled dataset ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Transitions(Mapping[str, Any]):
    """Labelled transitions; row i is one transition. Arrays are read-only once built.

        s, s_next    (N, obs_dim) float32      a     (N,) int64 or (N, act_dim) float32
        label        (N,) int8, 1 = S_e (expert/goal), 0 = S_n
        train        (N,) bool; held-out rows are whole episodes
        episode      (N,) int64, unique across sources      step  (N,) int64
        source       (N,) int16 index into source_names; source_names[0] == "expert"
        terminal     (N,) bool; the transition ends its episode by termination (not a time limit)

    A read-only mapping too (`data["s_next"]`), so batch code takes it or a plain dict of arrays.
    Equality is identity (arrays have no single truth value).
    """

    s: np.ndarray
    a: np.ndarray
    s_next: np.ndarray
    label: np.ndarray
    train: np.ndarray
    episode: np.ndarray
    step: np.ndarray
    source: np.ndarray
    source_names: tuple[str, ...]
    terminal: np.ndarray | None = None
    """None: no transition terminates (all zeros)."""

    ARRAYS = ("s", "a", "s_next", "label", "train", "episode", "step", "source", "terminal")

    def __post_init__(self) -> None:
        n = len(self.s)
        if self.terminal is None:
            object.__setattr__(self, "terminal", np.zeros(n, np.bool_))
        want = {"s": np.float32, "s_next": np.float32, "label": np.int8, "train": np.bool_,
                "episode": np.int64, "step": np.int64, "source": np.int16, "terminal": np.bool_}
        for key in self.ARRAYS:
            arr = getattr(self, key)
            if not isinstance(arr, np.ndarray):
                raise TypeError(f"Transitions.{key} must be a numpy array, not {type(arr).__name__}")
            if len(arr) != n:
                raise ValueError(f"Transitions.{key} has {len(arr)} rows; s has {n}")
            if key in want and arr.dtype != want[key]:
                raise TypeError(f"Transitions.{key} must be {np.dtype(want[key])}, not {arr.dtype}")
        if self.s.ndim != 2 or self.s_next.shape != self.s.shape:
            raise ValueError(f"s and s_next must be (N, obs_dim) alike; got {self.s.shape} and {self.s_next.shape}")
        if self.a.dtype == np.int64:
            if self.a.ndim != 1:
                raise ValueError(f"discrete actions must be (N,); got {self.a.shape}")
        elif self.a.dtype != np.float32 or self.a.ndim != 2:
            raise TypeError(f"actions must be (N,) int64 or (N, act_dim) float32; got {self.a.shape} {self.a.dtype}")
        for key in ("label", "train", "episode", "step", "source", "terminal"):
            if getattr(self, key).ndim != 1:
                raise ValueError(f"Transitions.{key} must be 1-D")
        names = tuple(str(x) for x in self.source_names)
        if not names or names[0] != EXPERT or len(set(names)) != len(names):
            raise ValueError(f"source_names must start with {EXPERT!r} and be unique; got {names}")
        object.__setattr__(self, "source_names", names)
        if n and (self.label.min() < 0 or self.label.max() > 1):
            raise ValueError("label must be 0 or 1")
        if n and (self.source.min() < 0 or self.source.max() >= len(names)):
            raise ValueError(f"source indices must lie in [0, {len(names)})")
        for key in self.ARRAYS:
            getattr(self, key).flags.writeable = False

    @classmethod
    def from_arrays(cls, source_names: Any, **arrays: Any) -> Transitions:
        """Cast arrays to the record's dtypes (float actions become (N, act_dim) float32)."""
        a = np.asarray(arrays["a"])
        a = a.astype(np.int64) if np.issubdtype(a.dtype, np.integer) else a.reshape(len(a), -1).astype(np.float32)
        return cls(
            s=np.asarray(arrays["s"], np.float32), a=a, s_next=np.asarray(arrays["s_next"], np.float32),
            label=np.asarray(arrays["label"]).astype(np.int8), train=np.asarray(arrays["train"]).astype(bool),
            episode=np.asarray(arrays["episode"], np.int64), step=np.asarray(arrays["step"], np.int64),
            source=np.asarray(arrays["source"]).astype(np.int16), source_names=tuple(source_names),
            terminal=(np.asarray(arrays["terminal"]).astype(bool) if arrays.get("terminal") is not None
                      else None))

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        # rebuilt through __init__ on unpickling: checked again and read-only in every worker
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))

    def __getitem__(self, key: str) -> Any:
        if key not in self.ARRAYS and key != "source_names":
            raise KeyError(key)
        return getattr(self, key)

    def __contains__(self, key: object) -> bool:
        return key in self.ARRAYS or key == "source_names"

    def __iter__(self) -> Iterator[str]:
        return iter((*self.ARRAYS, "source_names"))

    def __len__(self) -> int:
        """The number of keys (a Mapping); `n` is the number of rows."""
        return len(self.ARRAYS) + 1

    @property
    def n(self) -> int:
        return len(self.s)

    __eq__ = object.__eq__
    __hash__ = object.__hash__

    def subset(self, rows: np.ndarray) -> Transitions:
        """The rows `rows` (a bool mask or indices), same sources."""
        return Transitions(**{k: getattr(self, k)[rows] for k in self.ARRAYS}, source_names=self.source_names)


# -- one evaluation -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Example(Mapping[str, Any]):
    """One worst-scored transition: an expert state with a low reward or another state with a
    high one. A read-only mapping too (`w["state"]`, `w.get("reward")`), as prompts read it."""

    label: str
    """"expert" or "negative"."""
    source: str
    reward: float
    state: dict[str, Any]
    """{field: value} of s_next (a float, or a list for vector fields; {"raw": [...]} without schema)."""
    components: dict[str, Any] = field(default_factory=dict)
    episode: int = -1
    step: int = -1

    def __post_init__(self) -> None:
        if self.label not in ("expert", "negative"):
            raise ValueError(f"Example.label must be 'expert' or 'negative', not {self.label!r}")

    def __getitem__(self, key: str) -> Any:
        if key not in _EXAMPLE_KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self) -> Iterator[str]:
        return iter(_EXAMPLE_KEYS)

    def __len__(self) -> int:
        return len(_EXAMPLE_KEYS)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Example:
        return cls(**{k: d[k] for k in _EXAMPLE_KEYS if k in d})


_EXAMPLE_KEYS = tuple(f.name for f in fields(Example))


@dataclass(frozen=True)
class EvalResult:
    """What one evaluation of one reward program found (any fitness).

    `error` set means the program could not be scored (`error_kind` says how: the sandbox's
    kinds, e.g. "runtime", "timeout", "compile"); the scores are then None.
    """

    fitness: float | None = None
    """Train fitness (offline: in [0, 1], 1 = perfect separation, 0 = chance)."""
    heldout_fitness: float | None = None
    metrics: dict[str, float | None] = field(default_factory=dict)
    params: dict[str, float] = field(default_factory=dict)
    """Fitted PARAMS (4 significant digits)."""
    worst: tuple[Example, ...] = ()
    calibration: dict[str, float] = field(default_factory=dict)
    """{alpha, beta, centre, scale}: D(s) = sigma(alpha * (r - centre) / scale + beta)."""
    n_evals: int = 0
    """Reward calls, PARAMS fitting included."""
    debug_output: str | None = None
    """The program's own debug() on its worst examples (for the proposer only)."""
    seconds: float = 0.0
    error: str | None = None
    error_kind: str | None = None

    def __post_init__(self) -> None:
        if self.error is None and self.fitness is None:
            raise ValueError("an EvalResult without an error needs a fitness")
        object.__setattr__(self, "worst", tuple(
            w if isinstance(w, Example) else Example.from_dict(w) for w in self.worst))

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, kind: str, message: str, seconds: float = 0.0) -> EvalResult:
        return cls(error=message, error_kind=kind, seconds=seconds)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON-ready)."""
        d = asdict(self)
        d["worst"] = [w.to_dict() for w in self.worst]
        return d


# -- PPO ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PPOJob:
    """One batched PPO request: every source trains `seeds` runs of `steps` env steps in one
    compiled program (`grace.fitness.ppo.run_ppo`)."""

    sources: tuple[str, ...]
    """Reward sources, or `grace.fitness.ppo.TRUE_REWARD` for the env's own reward."""
    steps: int
    seeds: int = 2
    seed: int = 0
    algo_kwargs: dict[str, Any] | None = None
    """PPO settings (field names of `[ppo.discrete]`/`[ppo.continuous]`) over the task's own and
    grace's defaults (`grace.fitness.ppo.ppo_settings`)."""
    score_states: Any = None
    """IRL mode: a picklable `score_states(obs_batch) -> scores` (a discriminator fixed per round);
    the policy's score is `score_states.policy_likeness(episodes_obs, terminated_flags)` (each
    episode's visited states in step order) where it has one (ExpertSimilarity), else the mean score."""
    keep_trajectories: bool = False
    n_evals: int = 1
    """Points of the learning curve (1: only the final policy)."""
    eval_episodes: int = 8
    """Episodes per seed rolled out with the final policy."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sources", tuple(self.sources))
        if not self.sources:
            raise ValueError("a PPO job needs at least one source")
        if self.steps <= 0 or self.seeds <= 0 or self.n_evals <= 0 or self.eval_episodes <= 0:
            raise ValueError("PPO steps, seeds, n_evals and eval_episodes must be positive")


@dataclass(frozen=True)
class PPOResult:
    """PPO on one candidate reward, scored on the task's own env (never the candidate reward).

    `error` set: the candidate could not run (compile, trace, or a whole-batch failure).
    """

    error: str | None = None
    true_return_mean: float | None = None
    true_return_std: float | None = None
    true_returns: list[float] = field(default_factory=list)
    """Per seed: the mean return of the final policy's episodes."""
    success_rate: float | None = None
    """task.success over all final episodes (None: the task has no success metric)."""
    success_per_seed: list[float] | None = None
    irl_score: float | None = None
    """Mean `score_states` over the policy's visited states (IRL mode), else None."""
    irl_per_seed: list[float] | None = None
    """Per seed: the likeness of that seed's visited states (IRL mode with a distribution match, e.g.
    `ExpertSimilarity`), else None: the spread PPO in the loop weighs differences against."""
    curve: list[list[float]] = field(default_factory=list)
    """seeds x n_evals mean true return; `curve_steps` is its x axis."""
    curve_steps: list[int] = field(default_factory=list)
    env_steps: int = 0
    """Env steps of one run (one seed)."""
    compile_s: float = 0.0
    run_s: float = 0.0
    batch_size: int = 0
    trajectories: Trajectories | None = None
    """The final policy's episodes over all seeds (when the job keeps them)."""
    late_fields: list[dict[str, float]] | None = None
    """Per seed: the mean |value| of each observation field over the second half of the final
    policy's episodes (`grace.fitness.seed_spread`): where a seed that lags ends up."""

    def __post_init__(self) -> None:
        if self.error is None and self.true_return_mean is None:
            raise ValueError("a PPOResult without an error needs true_return_mean")

    @property
    def ok(self) -> bool:
        return self.error is None

    def to_dict(self) -> dict[str, Any]:
        """Plain data without the trajectories."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "trajectories"}


# -- tasks on the wire --------------------------------------------------------------------------------
@dataclass(frozen=True)
class TaskRef:
    """How a task reaches a worker: a built-in name, an absolute TOML path, or a picklable Task
    (its factories must be importable module-level functions or partials of them)."""

    spec: str | Task

    @classmethod
    def of(cls, task: Task | str | Path | TaskRef) -> TaskRef:
        if isinstance(task, TaskRef):
            return task
        if not isinstance(task, Task):
            spec = str(task)
            return cls(str(Path(spec).resolve()) if spec.endswith(".toml") or Path(spec).is_file() else spec)
        if task.extra.get("toml"):
            return cls(str(Path(task.extra["toml"]).resolve()))
        try:
            if get_task(task.name) is task:
                return cls(task.name)
        except ValueError:
            pass
        try:
            pickle.dumps(task)
        except Exception as exc:  # noqa: BLE001 - any pickling failure means the same thing
            raise ValueError(
                f"task {task.name!r} cannot be sent to a worker ({type(exc).__name__}: {exc}); its "
                "factories must be module-level functions (or functools.partial of them), not "
                "lambdas or closures") from None
        return cls(task)

    @property
    def name(self) -> str:
        return self.spec.name if isinstance(self.spec, Task) else self.spec

    def resolve(self) -> Task:
        return get_task(self.spec)

    def import_paths(self) -> tuple[str, ...]:
        """Folders a worker needs on sys.path to build the task (a TOML task's own folder)."""
        if isinstance(self.spec, Task):
            toml = self.spec.extra.get("toml")
            return (str(Path(toml).resolve().parent),) if toml else ()
        return (str(Path(self.spec).parent),) if self.spec.endswith(".toml") else ()
