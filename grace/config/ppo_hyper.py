"""[ppo.discrete] / [ppo.continuous]: rejax PPO hyperparameters per action kind."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PPOHyper:
    """rejax PPO hyperparameters of one action kind ([ppo.discrete], [ppo.continuous])."""

    num_envs: int = 32
    """Parallel environments."""
    num_steps: int = 64
    """Env steps per environment per update."""
    num_epochs: int = 4
    """Passes over each batch."""
    num_minibatches: int = 8
    """Minibatches per epoch."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm."""
    gamma: float = 0.99
    """Discount factor."""
    gae_lambda: float = 0.95
    """GAE lambda."""
    clip_eps: float = 0.2
    """PPO clipping epsilon."""
    ent_coef: float = 0.0
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    normalize_rewards: bool = True
    """Normalise rewards by a running estimate of the return's spread."""
    normalize_observations: bool = True
    """Normalise observations by running statistics."""
    reward_transform: str = "none"
    """Per-step transform of the candidate reward seen by PPO: none | symlog. It applies to the reward
    (less its absorbing state's: an ended episode stays worth 0), never to the shaping term (added
    after it, so it stays potential-based)."""
    activation: str = "tanh"
    """Activation of the actor and critic networks (a flax.linen name)."""
    hidden_layer_sizes: tuple[int, ...] = (64, 64)
    """Hidden layer widths of the actor and critic networks."""

    def algo_kwargs(self) -> dict[str, Any]:
        """The rejax `PPO.create` keyword arguments (`reward_transform` is grace's own)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
               if f.name not in ("activation", "hidden_layer_sizes")}
        out["agent_kwargs"] = {"activation": self.activation, "hidden_layer_sizes": tuple(self.hidden_layer_sizes)}
        return out

    def changed(self, default: PPOHyper) -> dict[str, Any]:
        """The fields that differ from `default`: what a run (or a user) set on purpose. A task's
        own PPO settings apply under them (`grace.fitness.ppo.ppo_settings`)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) != getattr(default, f.name)}

    def with_settings(self, settings: dict[str, Any]) -> PPOHyper:
        """A copy with `settings` (field names) applied; ValueError names an unknown key."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = sorted(set(settings) - names)
        if unknown:
            raise ValueError(f"unknown PPO setting {unknown[0]!r}; known: {', '.join(sorted(names))}")
        fixed = {k: tuple(v) if k == "hidden_layer_sizes" else v for k, v in settings.items()}
        return dataclasses.replace(self, **fixed)


def discrete_defaults() -> PPOHyper:
    return PPOHyper(num_envs=16, num_steps=128, num_epochs=8, num_minibatches=4, learning_rate=1e-3,
                    ent_coef=0.01, normalize_observations=False, reward_transform="symlog")
