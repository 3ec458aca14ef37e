"""BabyAI levels (minigrid) as grace goal tasks, with minigrid's BabyAI bot as the expert.

Each level's numpy env is `BabyAIVectorEnv`: the minigrid level with its observation turned into
the shared 155-wide vector (grace.tasks.babyai.encoding). Success is the level's own instruction
verifier: minigrid pays a reward > 0 exactly when the episode terminates on success. The task
description is what a proposer reads (never the true reward).

JAX twins: `JAX_TWIN_FACTORY` names a "module:function" that takes a level id and returns
(gymnax-style env, env_params); when set, every level trains PPO on it. Wiring the twin is
setting that one name.
"""

from __future__ import annotations

import importlib
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from grace.tasks.babyai.encoding import SCHEMA, WIDTH, obs_vector
from grace.tasks.spec import ActionSpace, Task

JAX_TWIN_FACTORY: str | None = "grace.tasks.babyai.jax_levels:make_jax_level"
"""The JAX twin hook: "module:function", function(level_id) -> (env, env_params); None: no PPO."""

REWARDS = Path(__file__).resolve().parent.parent / "rewards"
ACTIONS_DOC = ("0 turn left, 1 turn right, 2 move forward, 3 pick up, 4 drop, 5 toggle "
               "(open / close a door in front), 6 done")
COMMON = ("A BabyAI gridworld level (minigrid): the agent sees only its egocentric 7x7 view "
          "(walls block sight), in which it always stands at view cell (3, 6) facing the cell "
          "(3, 5); it turns, moves forward, picks up, drops and toggles. The mission is given "
          "as fields (verb, object type, colour, location; a second object for two-step "
          "missions). ")

LEVELS: dict[str, str] = {
    "BabyAI-GoToRedBall-v0": "A single 8x8 room with a red ball and distractor objects of "
        "other kinds; the mission is always 'go to the red ball'. The expert walks to the red "
        "ball and stops facing it (the ball in the cell in front).",
    "BabyAI-GoToLocal-v0": "A single 8x8 room with several objects; the mission names one "
        "object by type and colour ('go to the purple ball'). The expert walks to a matching "
        "object and stops facing it.",
    "BabyAI-PickupLoc-v0": "A single 8x8 room with several objects; the mission names an object "
        "by type, maybe colour and maybe its location relative to where the agent starts ('pick "
        "up the ball in front of you'). The expert walks to a matching object and picks it up.",
    "BabyAI-OpenDoor-v0": "The agent starts in the middle room of a 3x3 grid of rooms; its room "
        "has four closed doors of different colours. The mission names one door by colour or by "
        "location ('open the door on your left'). The expert walks to that door and opens it.",
    "BabyAI-OpenDoorColor-v0": "Stand-in for the paper's OpenMatchingDoor (minigrid has no such "
        "level): the agent's room has four closed doors of different colours and the mission "
        "names one by colour ('open the yellow door'); the door that matches the mission must be "
        "opened. The expert walks to the matching door and opens it.",
    "BabyAI-OpenTwoDoors-v0": "The agent's room has two closed doors on opposite walls. The "
        "mission names both by colour ('open the yellow door, then open the blue door'): the "
        "first door's colour is m_color, the second's m2_color. The expert opens the first door, "
        "turns around, walks to the second door and opens it.",
}
REFERENCE: dict[str, str] = {"BabyAI-GoToRedBall-v0": "babyai_gotoredball.py",
                             "BabyAI-GoToLocal-v0": "babyai_goto.py"}


class BabyAIVectorEnv:
    """A minigrid BabyAI level with grace's observation vector (gymnasium API)."""

    def __init__(self, level: str) -> None:
        import gymnasium as gym
        import minigrid  # noqa: F401 - registers the BabyAI ids

        self.env = gym.make(level, disable_env_checker=True)
        self.observation_space = gym.spaces.Box(-1.0, 255.0, (WIDTH,), np.float32)
        self.action_space = gym.spaces.Discrete(7)
        self.level = level

    @property
    def unwrapped(self) -> Any:
        return self.env.unwrapped

    def reset(self, *, seed: int | None = None, options: Any = None) -> tuple[np.ndarray, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs_vector(self.env, obs), info

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        obs, rew, terminated, truncated, info = self.env.step(int(action))
        return obs_vector(self.env, obs), float(rew), bool(terminated), bool(truncated), info

    def close(self) -> None:
        self.env.close()


class BotExpert:
    """minigrid's BabyAI bot as a grace policy: `start_episode(env)` after each reset (the bot
    plans on the env's full state, not on the observation), then one action per call."""

    def __init__(self) -> None:
        self._bot: Any = None

    def start_episode(self, env: Any) -> None:
        from minigrid.utils.baby_ai_bot import BabyAIBot

        self._bot = BabyAIBot(env)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> int:
        if self._bot is None:
            raise RuntimeError("BotExpert needs start_episode(env) after each reset")
        return int(self._bot.replan())


MAX_STEPS = {"BabyAI-GoToRedBall-v0": 64, "BabyAI-GoToLocal-v0": 64, "BabyAI-PickupLoc-v0": 64,
             "BabyAI-OpenDoor-v0": 576, "BabyAI-OpenDoorColor-v0": 576, "BabyAI-OpenTwoDoors-v0": 720}
"""minigrid's own time limits (tests check them against the envs)."""


def succeeded(ret: float, terminated: bool, obs: np.ndarray) -> bool:
    """The level's verifier: minigrid pays a reward > 0 only on successful termination."""
    return bool(terminated and ret > 0)


def _jax_twin(level: str) -> tuple[Any, Any]:
    module, _, name = str(JAX_TWIN_FACTORY).partition(":")
    return getattr(importlib.import_module(module), name)(level)


def babyai_tasks() -> dict[str, Task]:
    out = {}
    for level, text in LEVELS.items():
        ref = REFERENCE.get(level)
        out[level] = Task(
            name=level, description=COMMON + text, schema=SCHEMA,
            action=ActionSpace("discrete", n=7, doc=ACTIONS_DOC), kind="goal",
            make_env=partial(BabyAIVectorEnv, level),
            make_jax_env=partial(_jax_twin, level) if JAX_TWIN_FACTORY else None,
            jax_backend="gymnax" if JAX_TWIN_FACTORY else "",
            max_steps=MAX_STEPS[level], expert=BotExpert,
            expert_doc="minigrid's BabyAI bot (minigrid.utils.baby_ai_bot.BabyAIBot)",
            true_reward_doc="1 - 0.9 * step_count / max_steps on success (the instruction verifier), else 0",
            success=succeeded, reference_reward=REWARDS / ref if ref else None,
            extra={"minigrid_id": level},
        )
    return out
