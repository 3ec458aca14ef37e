"""User-defined tasks from a small TOML file: bring your own environment.

```toml
name = "my_cartpole"
description = "Keep the pole up."          # what a proposer reads
kind = "keepalive"                         # or "goal"
env = "CartPole-v1"                        # a gymnasium id, or "package.module:factory"
max_steps = 500
expert = "package.module:make_policy"      # optional: returns pi(obs, rng) -> action
jax_env = "package.module:make_jax_env"    # optional: returns a gymnax-style (env, env_params);
                                           # PPO (grace train, --fitness ppo, active rounds) needs it
[ppo]                                      # optional: PPO settings this task needs (why, in a comment)
gamma = 0.9                                # names as in [ppo.discrete] / [ppo.continuous]
[action]
kind = "discrete"                          # or "continuous" with shape = [k], low, high
n = 2
[[fields]]
name = "cart_position"
unit = "m"
doc = "cart position"
size = 1                                   # > 1 for a vector field
```
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import tomllib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import gymnasium as gym

from grace.tasks.spec import ActionSpace, Field, ObsSchema, SchemaError, Task


def resolve(spec: str, base_dir: Path | None = None) -> Any:
    """Import "package.module:attr"; the TOML file's folder is importable."""
    if ":" not in spec:
        raise SchemaError(f"{spec!r} is not of the form 'module:attribute'")
    mod_name, attr = spec.split(":", 1)
    if base_dir is not None and str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        module = importlib.import_module(mod_name)
        return getattr(module, attr)
    except (ImportError, AttributeError) as exc:
        raise SchemaError(f"cannot load {spec!r}: {exc}") from exc


@dataclass(frozen=True)
class LazyFactory:
    """`spec` ("module:attr") imported and called only when the task needs it: a JAX env factory
    is imported in the PPO worker, never in the host (no JAX in the main process). Picklable."""

    spec: str
    base_dir: str

    def __call__(self) -> Any:
        return resolve(self.spec, Path(self.base_dir))()


def _lazy(spec: str, base_dir: Path) -> LazyFactory:
    """Check that the module of `spec` exists (without importing it)."""
    mod_name = spec.partition(":")[0]
    if ":" not in spec or not spec.partition(":")[2]:
        raise SchemaError(f"{spec!r} is not of the form 'module:attribute'")
    if str(base_dir) not in sys.path:
        sys.path.insert(0, str(base_dir))
    try:
        found = importlib.util.find_spec(mod_name)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise SchemaError(f"cannot load {spec!r}: no module named {mod_name!r}")
    return LazyFactory(spec, str(base_dir.resolve()))


def _gym_env(env_id: str, max_steps: int) -> gym.Env:
    return gym.make(env_id, max_episode_steps=max_steps, disable_env_checker=True)


def load_task_toml(path: str | Path) -> Task:
    path = Path(path)
    data = _read_toml(path)
    missing = [k for k in ("name", "description", "env", "fields", "action") if k not in data]
    if missing:
        raise SchemaError(f"task file {path} lacks: {', '.join(missing)}")
    _check_types(path, data)
    try:
        fields = tuple(
            Field(f["name"], int(f.get("size", 1)), f.get("unit", ""), f.get("doc", ""))
            for f in data["fields"]
        )
    except (KeyError, TypeError) as exc:
        raise SchemaError(f"task file {path}: every [[fields]] entry needs a name ({exc})") from exc
    act = data["action"]
    action = ActionSpace(
        kind=act.get("kind", "discrete"), n=int(act.get("n", 0)),
        shape=tuple(act.get("shape", ())), low=float(act.get("low", -1.0)),
        high=float(act.get("high", 1.0)), doc=act.get("doc", ""),
    )
    max_steps = int(data.get("max_steps", 500))
    env_spec = data["env"]
    if ":" not in env_spec:
        _check_gym_id(path, env_spec)
    make_env = (
        resolve(env_spec, path.parent) if ":" in env_spec else partial(_gym_env, env_spec, max_steps)
    )
    expert = resolve(data["expert"], path.parent) if "expert" in data else None
    jax_env = _lazy(str(data["jax_env"]), path.parent) if "jax_env" in data else None
    return Task(
        name=data["name"], description=data["description"], schema=ObsSchema(fields),
        action=action, kind=data.get("kind", "keepalive"), make_env=make_env,
        make_jax_env=jax_env, jax_backend="gymnax" if jax_env else "",
        max_steps=max_steps, expert=expert, expert_doc=data.get("expert_doc", data.get("expert", "")),
        ppo=dict(data.get("ppo", {})), extra={"toml": str(path)},
    )


# -- validation (one clear line per mistake) ---------------------------------------------------
_MAX_TOML_BYTES = 1 << 20


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise SchemaError(f"task file {path} does not exist") from None
    except OSError as exc:
        raise SchemaError(f"cannot read task file {path}: {exc.strerror or exc}") from None
    if len(raw) > _MAX_TOML_BYTES:
        raise SchemaError(f"task file {path} is {len(raw)} bytes; a task file is under 1 MiB")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SchemaError(f"task file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"task file {path} is not valid TOML: {exc}") from None


def _want(path: Path, where: str, value: Any, kind: type | tuple[type, ...], what: str) -> None:
    ok = isinstance(value, kind) and not (kind in (int, float, (int, float)) and isinstance(value, bool))
    if not ok:
        raise SchemaError(f"task file {path}: {where} must be {what}, got {value!r}"[:300])


def _check_types(path: Path, data: dict[str, Any]) -> None:
    for key in ("name", "description", "env", "kind", "expert", "expert_doc"):
        if key in data:
            _want(path, key, data[key], str, "a string")
    if "kind" in data and data["kind"] not in ("keepalive", "goal"):
        raise SchemaError(f"task file {path}: kind must be 'keepalive' or 'goal', got {data['kind']!r}")
    if "max_steps" in data:
        _want(path, "max_steps", data["max_steps"], int, "an integer")
        if data["max_steps"] < 1:
            raise SchemaError(f"task file {path}: max_steps must be >= 1, got {data['max_steps']}")
    fields = data["fields"]
    if not isinstance(fields, list) or not fields:
        raise SchemaError(f"task file {path}: fields must be a non-empty list of [[fields]] tables")
    for i, f in enumerate(fields):
        _want(path, f"fields[{i}]", f, dict, "a [[fields]] table")
        if "name" not in f:
            raise SchemaError(f"task file {path}: every [[fields]] entry needs a name (fields[{i}])")
        _want(path, f"fields[{i}].name", f["name"], str, "a string")
        if "size" in f:
            _want(path, f"fields[{i}].size", f["size"], int, "an integer")
        for key in ("unit", "doc"):
            if key in f:
                _want(path, f"fields[{i}].{key}", f[key], str, "a string")
    act = data["action"]
    _want(path, "action", act, dict, "an [action] table")
    if "n" in act:
        _want(path, "action.n", act["n"], int, "an integer")
    for key in ("low", "high"):
        if key in act:
            _want(path, f"action.{key}", act[key], (int, float), "a number")
    if "shape" in act:
        shape = act["shape"]
        if not isinstance(shape, list) or not all(isinstance(k, int) and not isinstance(k, bool) and k > 0 for k in shape):
            raise SchemaError(f"task file {path}: action.shape must be a list of positive integers, got {shape!r}")
    for key in ("kind", "doc"):
        if key in act:
            _want(path, f"action.{key}", act[key], str, "a string")
    if act.get("kind", "discrete") == "discrete" and act.get("n", 0) < 1:
        raise SchemaError(f"task file {path}: a discrete [action] needs n >= 1")
    if "ppo" in data:
        _check_ppo(path, data["ppo"])


def _check_ppo(path: Path, ppo: Any) -> None:
    """`[ppo]`: the task's own PPO settings, by the names of `[ppo.discrete]` / `[ppo.continuous]`."""
    import dataclasses

    from grace.config import PPOConfig

    _want(path, "ppo", ppo, dict, "a [ppo] table")
    fields = {f.name: f.default for f in dataclasses.fields(PPOConfig().continuous)}
    for key, value in ppo.items():
        if key not in fields:
            raise SchemaError(f"task file {path}: unknown PPO setting ppo.{key}; known: {', '.join(sorted(fields))}")
        default = fields[key]
        if isinstance(default, bool):
            _want(path, f"ppo.{key}", value, bool, "true or false")
        elif isinstance(default, int | float):
            _want(path, f"ppo.{key}", value, (int, float) if isinstance(default, float) else int, "a number")
        elif isinstance(default, str):
            _want(path, f"ppo.{key}", value, str, "a string")


def _check_gym_id(path: Path, env_id: str) -> None:
    try:
        gym.spec(env_id)
    except gym.error.Error as exc:
        raise SchemaError(f"task file {path}: env {env_id!r} is not a registered gymnasium id ({exc})") from None
