"""What grace knows about an environment: the observation schema (the names reward code reads,
`s.pole_angle`), the action space and the Task record."""

from __future__ import annotations

import keyword
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class SchemaError(ValueError):
    """A schema, or data checked against one, is malformed. The message is one line."""


@dataclass(frozen=True)
class Field:
    """One named slice of the observation vector."""

    name: str
    size: int = 1
    """1 for a scalar field (shape (B,)); k > 1 for a vector field (shape (B, k))."""
    unit: str = ""
    doc: str = ""

    def describe(self) -> str:
        shape = "" if self.size == 1 else f" (vector of {self.size})"
        unit = f" [{self.unit}]" if self.unit else ""
        return f"{self.name}{unit}{shape}: {self.doc}".rstrip(": ")


@dataclass(frozen=True)
class ObsSchema:
    fields: tuple[Field, ...]
    slices: dict[str, slice] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, slice] = {}
        start = 0
        for f in self.fields:
            if not f.name.isidentifier() or keyword.iskeyword(f.name) or f.name.startswith("_"):
                raise SchemaError(f"field name {f.name!r} is not a valid identifier")
            if f.name in seen or f.name == "raw":
                raise SchemaError(f"field name {f.name!r} is duplicated or reserved")
            if f.size < 1:
                raise SchemaError(f"field {f.name!r} has size {f.size}; sizes must be >= 1")
            seen[f.name] = slice(start, start + f.size)
            start += f.size
        object.__setattr__(self, "slices", seen)

    @property
    def width(self) -> int:
        return sum(f.size for f in self.fields)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]

    def index_map(self) -> dict[str, int | list[int]]:
        """Field name -> column index (scalar) or list of indices (vector)."""
        out: dict[str, int | list[int]] = {}
        for f in self.fields:
            sl = self.slices[f.name]
            out[f.name] = sl.start if f.size == 1 else list(range(sl.start, sl.stop))
        return out

    def state_dict(self, row: np.ndarray, digits: int | None = None) -> dict[str, Any]:
        """One observation (obs_dim,) as {field: value} (a float, or a list for vector fields),
        rounded to `digits` when given: how states are shown to proposers and in examples."""
        def num(x: Any) -> float:
            return float(x) if digits is None else round(float(x), digits)

        out: dict[str, Any] = {}
        for f in self.fields:
            v = row[self.slices[f.name]]
            out[f.name] = num(v[0]) if f.size == 1 else [num(x) for x in v]
        return out

    def describe(self) -> str:
        return "\n".join(f"- s.{f.describe()}" for f in self.fields)

    def check(self, obs: np.ndarray, what: str = "observations") -> None:
        if obs.ndim != 2:
            raise SchemaError(f"{what} must be 2-D (steps, obs_dim), got shape {obs.shape}")
        if obs.shape[1] != self.width:
            raise SchemaError(
                f"{what} have width {obs.shape[1]} but the task's observation schema has width "
                f"{self.width} ({', '.join(self.names)})"
            )
        if not np.issubdtype(obs.dtype, np.floating):
            raise SchemaError(f"{what} must be floating point, got dtype {obs.dtype}")

    @classmethod
    def from_names(cls, names: list[str]) -> ObsSchema:
        return cls(tuple(Field(n) for n in names))


@dataclass(frozen=True)
class ActionSpace:
    kind: str  # "discrete" | "continuous"
    n: int = 0
    """Number of actions (discrete)."""
    shape: tuple[int, ...] = ()
    low: float = -1.0
    high: float = 1.0
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in ("discrete", "continuous"):
            raise SchemaError(f"action kind must be 'discrete' or 'continuous', got {self.kind!r}")

    @property
    def dim(self) -> int:
        return 1 if self.kind == "discrete" else int(np.prod(self.shape))

    def describe(self) -> str:
        if self.kind == "discrete":
            return f"discrete, {self.n} actions (a is an int array of shape (B,)). {self.doc}".strip()
        return (
            f"continuous, shape {self.shape} in [{self.low}, {self.high}] "
            f"(a has shape (B, {self.dim})). {self.doc}"
        ).strip()

    def batch(self, actions: np.ndarray) -> np.ndarray:
        """Actions as reward code receives them: (B,) int64 for discrete, (B, act_dim) float32
        for continuous tasks (whatever shape they were stored in)."""
        a = np.asarray(actions)
        if self.kind == "discrete":
            return a.reshape(len(a)).astype(np.int64)
        return a.reshape(len(a), -1).astype(np.float32)

    def check(self, actions: np.ndarray) -> None:
        if self.kind == "discrete":
            if actions.ndim != 1:
                raise SchemaError(f"discrete actions must be 1-D, got shape {actions.shape}")
        elif actions.ndim != 2 or actions.shape[1] != self.dim:
            raise SchemaError(
                f"actions have shape {actions.shape} but the task's action space has "
                f"dimension {self.dim}"
            )

Policy = Callable[[np.ndarray, np.random.Generator], Any]
"""Maps one observation (obs_dim,) and an rng to one action."""


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    """One paragraph a proposer reads: the goal, what success looks like, the dynamics."""
    schema: ObsSchema
    action: ActionSpace
    kind: str
    """"goal": positives are the final states of episodes that terminated (reached the goal);
    "keepalive": positives are all expert states."""
    make_env: Callable[[], Any] | None = None
    """numpy env factory (a gymnasium.Env)."""
    make_jax_env: Callable[[], tuple[Any, Any]] | None = None
    """JAX env factory: returns (gymnax-style env, env_params)."""
    jax_backend: str = ""
    """"gymnax" or "brax" (for PPO fitness)."""
    max_steps: int = 500
    expert: Callable[[], Policy] | None = None
    """Builds the scripted (or trained) expert policy used by `grace demos collect`."""
    expert_doc: str = ""
    demo_env: Callable[[], Any] | None = None
    """Env the demos are collected on, when it differs from make_env (fixed-horizon variants of
    goal tasks collect on the terminating original so the episode end marks the goal)."""
    true_reward_doc: str = ""
    """What the env's own reward is (benchmarks and `grace train` only, never the search)."""
    success: Callable[[float, bool, np.ndarray], bool] | None = None
    """success(episode_return, terminated, obs_of_episode) -> bool (benchmarks only)."""
    reference_reward: Path | None = None
    ppo: dict[str, Any] = field(default_factory=dict)
    """PPO settings this task needs (`[ppo.discrete]`/`[ppo.continuous]` field names, e.g.
    gamma), as RL Zoo keeps per-env hyperparameters: over grace's defaults, under what a run or
    a user sets (`grace.fitness.ppo.ppo_settings`). Each built-in entry says why in a comment."""
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("goal", "keepalive"):
            raise ValueError(f"task kind must be 'goal' or 'keepalive', got {self.kind!r}")

    @property
    def obs_dim(self) -> int:
        return self.schema.width

    def prompt_info(self) -> dict[str, str]:
        return prompt_info(self)


def prompt_info(task: Any) -> dict[str, str]:
    """What a proposer may see about a task (never the true reward): for a Task or a proposer's
    TaskContext alike (anything with name, description, schema, action and kind)."""
    return {
        "name": task.name,
        "description": task.description,
        "schema": task.schema.describe(),
        "action": task.action.describe(),
        "kind": task.kind,
    }
