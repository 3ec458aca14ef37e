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


FIELD_KINDS = ("real", "categorical")


@dataclass(frozen=True)
class Field:
    """One named slice of the observation vector."""

    name: str
    size: int = 1
    """1 for a scalar field (shape (B,)); k > 1 for a vector field (shape (B, k))."""
    unit: str = ""
    doc: str = ""
    shape: tuple[int, ...] = ()
    """A grid field's shape, e.g. (7, 7, 3): views give (B, *shape) (stored flat, C order; size
    must equal its product). Empty for scalar and vector fields."""
    kind: str = "real"
    """"real" or "categorical" (whole-number ids: a grid of object / colour / state ids)."""
    focus: tuple[int, ...] = ()
    """Egocentric grids: the cell the observer stands in (BabyAI: (3, 6)); the offline
    operator's cell terms look at the cells around it."""

    def __post_init__(self) -> None:
        if self.shape and int(np.prod(self.shape)) != self.size:
            raise SchemaError(f"field {self.name!r}: shape {self.shape} does not hold {self.size} values")
        if self.focus and (len(self.focus) + 1 != len(self.shape)
                           or not all(0 <= x < n for x, n in zip(self.focus, self.shape, strict=False))):
            raise SchemaError(f"field {self.name!r}: focus {self.focus} is not a cell of shape {self.shape}")
        if self.kind not in FIELD_KINDS:
            raise SchemaError(f"field {self.name!r}: kind must be one of {FIELD_KINDS}, got {self.kind!r}")

    @property
    def grid(self) -> bool:
        return bool(self.shape)

    def describe(self) -> str:
        if self.shape:
            shape = f" ({self.kind} grid of shape {self.shape})"
        else:
            shape = "" if self.size == 1 else f" (vector of {self.size})"
        unit = f" [{self.unit}]" if self.unit else ""
        return f"{self.name}{unit}{shape}: {self.doc}".rstrip(": ")


@dataclass(frozen=True)
class Derived:
    """A named scalar computed from the stored vector, read like a field (`s.front_is_target`).

    `fn(raw)` maps observations (..., width) to (...). It is trusted task code, not reward code,
    and must work on numpy and jax arrays alike: operators, `[..., i]` indexing and array
    methods only (never numpy functions on its argument), so views compute it in the sandbox,
    under PPO (jit, vmap) and in exports the same way. A module-level function (picklable)."""

    name: str
    fn: Callable[[Any], Any]
    doc: str = ""
    unit: str = ""

    def describe(self) -> str:
        unit = f" [{self.unit}]" if self.unit else ""
        return f"{self.name}{unit} (derived): {self.doc}".rstrip(": ")


@dataclass(frozen=True)
class ObsSchema:
    fields: tuple[Field, ...]
    derived: tuple[Derived, ...] = ()
    """Scalars computed from the stored vector (views, states shown to proposers)."""
    constants: tuple[tuple[str, int], ...] = ()
    """Named integer constants every view carries (`s.BALL`, `s.RED`, `s.OPEN`): the vocabulary
    of categorical fields, so reward code reads like the task. UPPER_CASE names."""
    slices: dict[str, slice] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, slice] = {}
        start = 0
        for f in self.fields:
            _check_name(f.name, seen)
            if f.size < 1:
                raise SchemaError(f"field {f.name!r} has size {f.size}; sizes must be >= 1")
            seen[f.name] = slice(start, start + f.size)
            start += f.size
        names: dict[str, Any] = dict(seen)
        for d in self.derived:
            _check_name(d.name, names)
            names[d.name] = d
        for name, value in self.constants:
            _check_name(name, names)
            if not name.isupper() or type(value) is not int:
                raise SchemaError(f"constant {name!r} must be an UPPER_CASE name of an int")
            names[name] = value
        object.__setattr__(self, "slices", seen)

    @property
    def view_names(self) -> list[str]:
        """Every attribute a view has besides `raw`: fields, derived scalars, constants."""
        return [*self.names, *(d.name for d in self.derived), *(n for n, _ in self.constants)]

    def derived_values(self, obs: np.ndarray) -> dict[str, np.ndarray]:
        """The derived scalars of observations (..., width), computed with numpy."""
        raw = np.asarray(obs, dtype=np.float32)
        return {d.name: np.asarray(d.fn(raw), dtype=np.float64) for d in self.derived}

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
            if f.kind == "categorical":
                out[f.name] = np.asarray(v).reshape(f.shape or (f.size,)).astype(int).tolist()
            else:
                out[f.name] = num(v[0]) if f.size == 1 else [num(x) for x in v]
        for name, value in self.derived_values(row).items():
            out[name] = num(value)
        return out

    def describe(self) -> str:
        lines = [f"- s.{f.describe()}" for f in self.fields]
        lines += [f"- s.{d.describe()}" for d in self.derived]
        if self.constants:
            consts = ", ".join(f"{n}={v}" for n, v in self.constants)
            lines.append(f"- constants on every view (s.NAME): {consts}")
        return "\n".join(lines)

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


def _check_name(name: str, taken: dict[str, Any]) -> None:
    if not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
        raise SchemaError(f"field name {name!r} is not a valid identifier")
    if name in taken or name == "raw":
        raise SchemaError(f"field name {name!r} is duplicated or reserved")


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
