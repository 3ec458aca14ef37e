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
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise SchemaError(f"task file {path} does not exist") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SchemaError(f"task file {path} is not valid TOML: {exc}") from exc
    missing = [k for k in ("name", "description", "env", "fields", "action") if k not in data]
    if missing:
        raise SchemaError(f"task file {path} lacks: {', '.join(missing)}")
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
        extra={"toml": str(path)},
    )
