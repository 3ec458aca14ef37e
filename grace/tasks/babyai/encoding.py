"""The BabyAI observation contract: one float32 vector of width 155 (shared with the JAX twin).

Layout (`SCHEMA`): `image` (147 = minigrid's egocentric 7x7x3 view of object / colour / state ids,
C order, image[i, j] with i = view column, j = view row; the agent sits at view cell (3, 6)
facing j = 0, so the cell in front is (3, 5), and a carried object shows in the agent's own
cell), `direction` (0..3), the mission parsed from the level's instruction object (`m_verb`,
`m_type`, `m_color`, `m_loc`, `m2_type`, `m2_color`; -1 where absent) and `step_frac`
(step_count / max_steps). `obs_vector(env, obs)` builds it from a minigrid env and its obs.

Reward code reads it through views: `s.image` is (B, 7, 7, 3); derived scalars (`s.front_type`,
`s.front_is_target`, `s.target_dist`, ...) are computed from the vector by the functions below,
which use only operators, `[..., i]` indexing and array methods, so numpy (sandbox), jax.numpy
(PPO, under jit and vmap) and exports compute them identically; `s.BALL`, `s.RED`, `s.OPEN`,
... are the vocabulary's ids as plain ints. The ids are minigrid's (minigrid.core.constants);
minigrid itself is not imported here (tests check the tables against it).
"""

from __future__ import annotations

from typing import Any

import numpy
import numpy as np

from grace.tasks.spec import Derived, Field, ObsSchema

OBJECTS = {"UNSEEN": 0, "EMPTY": 1, "WALL": 2, "FLOOR": 3, "DOOR": 4, "KEY": 5, "BALL": 6,
           "BOX": 7, "GOAL": 8, "LAVA": 9, "AGENT": 10}
COLORS = {"RED": 0, "GREEN": 1, "BLUE": 2, "PURPLE": 3, "YELLOW": 4, "GREY": 5}
STATES = {"OPEN": 0, "CLOSED": 1, "LOCKED": 2}
VERBS = {"VERB_GOTO": 0, "VERB_PICKUP": 1, "VERB_OPEN": 2, "VERB_PUTNEXT": 3}
LOCS = {"LOC_NONE": 0, "LOC_FRONT": 1, "LOC_BEHIND": 2, "LOC_LEFT": 3, "LOC_RIGHT": 4}
ACTIONS = {"A_LEFT": 0, "A_RIGHT": 1, "A_FORWARD": 2, "A_PICKUP": 3, "A_DROP": 4,
           "A_TOGGLE": 5, "A_DONE": 6}
NOT_VISIBLE = 10
"""`target_dist` when no matching object is in view (the farthest view cell is 9 away)."""

VIEW = 7
WIDTH = 155
AGENT_CELL = (3, 6)
FRONT_CELL = (3, 5)
# Columns of the vector (index = (i*7 + j)*3 + c for image[i, j, c]).
FRONT = (FRONT_CELL[0] * VIEW + FRONT_CELL[1]) * 3  # 78: front cell's type, 79 colour, 80 state
CARRY = (AGENT_CELL[0] * VIEW + AGENT_CELL[1]) * 3  # 81: agent cell (the carried object)
DIRECTION, M_VERB, M_TYPE, M_COLOR, M_LOC, M2_TYPE, M2_COLOR, STEP_FRAC = range(147, 155)

VIEW_DIST = np.array([[abs(i - AGENT_CELL[0]) + (AGENT_CELL[1] - j) for j in range(VIEW)]
                      for i in range(VIEW)], dtype=np.float32)
"""Manhattan distance in view cells from the agent's cell to view cell (i, j)."""


# -- derived scalars ------------------------------------------------------------------------------
# numpy and jax alike: operators, `[..., i]` indexing and array methods only. Each function is
# self-contained (literal columns, `numpy` for constants only): exports copy its source.
def front_type(raw: Any) -> Any:
    return raw[..., 78]


def front_color(raw: Any) -> Any:
    return raw[..., 79]


def front_state(raw: Any) -> Any:
    return raw[..., 80]


def carrying_type(raw: Any) -> Any:
    return raw[..., 81]


def carrying_color(raw: Any) -> Any:
    return raw[..., 82]


def front_is_target(raw: Any) -> Any:
    # front cell (78: type, 79: colour) against the mission (149: m_type, 150: m_color; -1 any)
    return ((raw[..., 78] == raw[..., 149]) & ((raw[..., 79] == raw[..., 150]) | (raw[..., 150] < 0))) * 1.0


def front_is_target2(raw: Any) -> Any:
    # front cell against the mission's second object (152: m2_type, 153: m2_color)
    return ((raw[..., 78] == raw[..., 152]) & ((raw[..., 79] == raw[..., 153]) | (raw[..., 153] < 0))) * 1.0


def carrying_target(raw: Any) -> Any:
    # the agent's own cell (81: type, 82: colour) shows what it carries
    return ((raw[..., 81] == raw[..., 149]) & ((raw[..., 82] == raw[..., 150]) | (raw[..., 150] < 0))) * 1.0


def target_dist(raw: Any) -> Any:
    img = raw[..., :147].reshape(raw.shape[:-1] + (7, 7, 3))
    kind, color = raw[..., 149][..., None, None], raw[..., 150][..., None, None]
    hit = (img[..., 0] == kind) & ((img[..., 1] == color) | (color < 0))
    dist = numpy.add.outer(numpy.abs(numpy.arange(7) - 3), 6 - numpy.arange(7)).astype(numpy.float32)
    return (hit * (dist - 10.0) + 10.0).min(axis=(-2, -1))


def target2_dist(raw: Any) -> Any:
    img = raw[..., :147].reshape(raw.shape[:-1] + (7, 7, 3))
    kind, color = raw[..., 152][..., None, None], raw[..., 153][..., None, None]
    hit = (img[..., 0] == kind) & ((img[..., 1] == color) | (color < 0))
    dist = numpy.add.outer(numpy.abs(numpy.arange(7) - 3), 6 - numpy.arange(7)).astype(numpy.float32)
    return (hit * (dist - 10.0) + 10.0).min(axis=(-2, -1))


DERIVED = (
    Derived("front_type", front_type, "object id in the cell in front of the agent (view cell (3, 5))"),
    Derived("front_color", front_color, "colour id in the cell in front of the agent"),
    Derived("front_state", front_state, "state id in the cell in front (doors: OPEN, CLOSED, LOCKED; 0 otherwise)"),
    Derived("carrying_type", carrying_type, "object id the agent carries (EMPTY when it carries nothing)"),
    Derived("carrying_color", carrying_color, "colour id of the carried object (0 when it carries nothing)"),
    Derived("front_is_target", front_is_target, "1.0 when the cell in front holds an object of the mission's type and colour (any colour if the mission names none), else 0.0"),
    Derived("front_is_target2", front_is_target2, "1.0 when the cell in front holds the mission's second object (m2_type, m2_color), else 0.0"),
    Derived("carrying_target", carrying_target, "1.0 when the agent carries an object of the mission's type and colour, else 0.0"),
    Derived("target_dist", target_dist, f"view-cell (Manhattan) distance from the agent to the nearest visible object matching the mission, 0 if carried, {NOT_VISIBLE} if none is visible", "cells"),
    Derived("target2_dist", target2_dist, f"the same for the mission's second object, {NOT_VISIBLE} if none is visible", "cells"),
)

SCHEMA = ObsSchema(
    (
        Field("image", 147, doc="the agent's egocentric 7x7 view, image[..., i, j, :] = (object, colour, state) ids of view cell (i, j); the agent is at (3, 6) facing towards j = 0, so (3, 5) is the cell in front; a carried object appears in the agent's cell",
              shape=(7, 7, 3), kind="categorical", focus=AGENT_CELL),
        Field("direction", doc="the agent's absolute direction: 0 east, 1 south, 2 west, 3 north"),
        Field("m_verb", doc="mission verb: VERB_GOTO, VERB_PICKUP, VERB_OPEN or VERB_PUTNEXT"),
        Field("m_type", doc="object id the mission names (e.g. BALL, DOOR); -1 if none"),
        Field("m_color", doc="colour id the mission names; -1 if it names no colour"),
        Field("m_loc", doc="location the mission names, relative to the agent's start: LOC_NONE, LOC_FRONT, LOC_BEHIND, LOC_LEFT, LOC_RIGHT"),
        Field("m2_type", doc="the mission's second object id (the second door to open, the object to put next to); -1 if none"),
        Field("m2_color", doc="the mission's second object colour id; -1 if none"),
        Field("step_frac", doc="step_count / max_steps: 0 at reset, 1 at the time limit"),
    ),
    derived=DERIVED,
    constants=tuple({**OBJECTS, **COLORS, **STATES, **VERBS, **LOCS, **ACTIONS,
                     "NOT_VISIBLE": NOT_VISIBLE}.items()),
)
assert SCHEMA.width == WIDTH

_VERB_OF = {"GoToInstr": 0, "PickupInstr": 1, "OpenInstr": 2, "PutNextInstr": 3}
_LOC_OF = {None: 0, "front": 1, "behind": 2, "left": 3, "right": 4}


class MissionError(ValueError):
    """A level's instruction is outside what the vector can describe. One-line message."""


def _desc(desc: Any) -> tuple[float, float, float]:
    kind = -1 if desc.type is None else OBJECTS[str(desc.type).upper()]
    color = -1 if desc.color is None else COLORS[str(desc.color).upper()]
    if desc.loc not in _LOC_OF:
        raise MissionError(f"unknown object location {desc.loc!r}")
    return float(kind), float(color), float(_LOC_OF[desc.loc])


def _action(instr: Any) -> tuple[float, ...]:
    name = type(instr).__name__
    if name not in _VERB_OF:
        raise MissionError(f"instruction {name} is not a single action (go to, pick up, open, put next)")
    if name == "PutNextInstr":
        t, c, loc = _desc(instr.desc_move)
        t2, c2, _ = _desc(instr.desc_fixed)
        return (3.0, t, c, loc, t2, c2)
    t, c, loc = _desc(instr.desc)
    return (float(_VERB_OF[name]), t, c, loc, -1.0, -1.0)


def mission_vector(instrs: Any) -> np.ndarray:
    """(m_verb, m_type, m_color, m_loc, m2_type, m2_color) of a level's instruction object.

    A sequence of two actions (BeforeInstr, AndInstr: a then b; AfterInstr: b then a) gives the
    first action's verb and object, and the second's object as m2 (OpenTwoDoors)."""
    name = type(instrs).__name__
    if name in ("BeforeInstr", "AndInstr", "AfterInstr"):
        first, second = (instrs.instr_b, instrs.instr_a) if name == "AfterInstr" else (instrs.instr_a, instrs.instr_b)
        a, b = _action(first), _action(second)
        return np.array([*a[:4], b[1], b[2]], dtype=np.float32)
    return np.array(_action(instrs), dtype=np.float32)


def obs_vector(env: Any, obs: dict[str, Any]) -> np.ndarray:
    """The 155-wide vector of a minigrid env's observation (`env` may be wrapped)."""
    u = env.unwrapped
    image = np.asarray(obs["image"]).reshape(-1)
    if image.shape != (147,):
        raise MissionError(f"expected a 7x7x3 image, got {np.asarray(obs['image']).shape}")
    out = np.empty(WIDTH, dtype=np.float32)
    out[:147] = image
    out[DIRECTION] = float(obs["direction"])
    out[M_VERB:STEP_FRAC] = mission_vector(u.instrs)
    out[STEP_FRAC] = u.step_count / u.max_steps
    return out
