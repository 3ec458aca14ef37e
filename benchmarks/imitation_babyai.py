"""BabyAI levels for the imitation baselines (benchmarks/baselines_imitation.py): the env GAIL trains on.

It is grace's own numpy env, `grace.tasks.babyai.levels.BabyAIVectorEnv` (the minigrid level
with its observation turned into grace's 155-wide vector, grace.tasks.babyai.encoding), behind a
`gymnasium.Env` subclass so SB3 / imitation accept it; the demos in demos/BabyAI-*.npz were
collected on that same class (`grace demos collect`), so they are valid GAIL demos for it by
construction. grace is imported from the repository root, not installed: the chain it pulls
(grace.tasks.spec, grace.tasks.babyai.{encoding,levels}, grace.data.{rollout,trajectories,
formats,demo_files}) needs numpy, gymnasium and minigrid only, so it runs in the imitation venv
(gymnasium 0.29 + minigrid 3.2.0) as well as in the main one. `replay_mismatch` checks that
claim where it matters: it replays a demo file's actions from its reset seeds on this env and
compares every observation (baselines_imitation.py runs it before training; tests run it too).

Success per episode = the level's own instruction verifier (minigrid pays a reward > 0 only on
successful termination; `grace.tasks.babyai.levels.succeeded`); the true return is minigrid's
reward (1 - 0.9 * steps / max_steps on success, else 0), as grace's true-reward PPO reports it.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from grace.tasks.babyai.levels import LEVELS, BabyAIVectorEnv, babyai_tasks, succeeded  # noqa: E402

__all__ = ["LEVELS", "BabyAIGym", "ppo_kwargs", "replay_mismatch", "succeeded"]


class BabyAIGym(gym.Env):
    """A BabyAI level emitting grace's 155-wide observation vector (a gymnasium.Env for SB3)."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"unknown BabyAI level {level!r}; choose from {', '.join(LEVELS)}")
        self.inner = BabyAIVectorEnv(level)
        self.observation_space = self.inner.observation_space
        self.action_space = self.inner.action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        return self.inner.reset(seed=seed, options=options)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        return self.inner.step(action)

    def close(self) -> None:
        self.inner.close()


def ppo_kwargs() -> tuple[int, dict[str, Any]]:
    """(n_envs, SB3 PPO kwargs): grace's PPO settings for the BabyAI levels (`ppo_settings`: 16 envs
    x 128 steps, 8 epochs, 4 minibatches, lr 1e-3, entropy 0.01, clip 0.2, 64x64 tanh MLP) in SB3's
    names. grace's reward normalisation (symlog) has no SB3 counterpart and is left out."""
    return 16, dict(n_steps=128, batch_size=16 * 128 // 4, n_epochs=8, learning_rate=1e-3, gamma=0.99,
                    gae_lambda=0.95, clip_range=0.2, ent_coef=0.01, vf_coef=0.5, max_grad_norm=0.5)


class _Replay:
    """A policy that plays back recorded actions, one episode per `start_episode` (rollout calls it
    after every reset)."""

    def __init__(self, episodes: list[np.ndarray]) -> None:
        self.episodes = episodes
        self.index = -1
        self.t = 0

    def start_episode(self, env: Any) -> None:
        self.index += 1
        self.t = 0

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> int:
        acts = self.episodes[self.index]
        self.t += 1
        return int(acts[self.t - 1]) if self.t <= len(acts) else 6  # past the record: 'done'


def replay_mismatch(level: str, demos: str | Path) -> str | None:
    """Replay the demo file's actions on `BabyAIGym(level)` from the reset seeds grace's collector
    used (its meta "seed", through grace.data.rollout.rollout itself); None when every episode's
    observations, length and termination equal the recorded ones, else one line saying where they
    first differ."""
    from grace.data.rollout import rollout
    from grace.data.trajectories import load_demos

    task = babyai_tasks()[level]
    demo = load_demos(demos, task)
    if "seed" not in demo.meta:
        return f"{demos}: no reset seed in its meta (not made by `grace demos collect`); cannot replay"
    recorded = list(demo.episodes())
    replayed = list(rollout(task, _Replay([e.actions for e in recorded]), len(recorded), int(demo.meta["seed"]),
                            env=BabyAIGym(level)).episodes())
    for i, (a, b) in enumerate(zip(recorded, replayed, strict=True)):
        if a.obs.shape != b.obs.shape or a.terminated != b.terminated:
            return f"episode {i}: recorded {a.length} steps (terminated {a.terminated}), replayed {b.length} ({b.terminated})"
        if not np.array_equal(a.obs, b.obs):
            t, col = np.argwhere(a.obs != b.obs)[0]
            return f"episode {i} step {t}: observation column {col} recorded {a.obs[t, col]}, replayed {b.obs[t, col]}"
    return None
