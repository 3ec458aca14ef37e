"""The Task: everything grace knows about an environment, in one frozen record."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from grace.tasks.schema import ActionSpace, ObsSchema

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
    fixed_horizon: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kind not in ("goal", "keepalive"):
            raise ValueError(f"task kind must be 'goal' or 'keepalive', got {self.kind!r}")

    @property
    def obs_dim(self) -> int:
        return self.schema.width

    def prompt_info(self) -> dict[str, str]:
        """What a proposer may see about the task (never the true reward)."""
        return {
            "name": self.name,
            "description": self.description,
            "schema": self.schema.describe(),
            "action": self.action.describe(),
            "kind": self.kind,
        }
