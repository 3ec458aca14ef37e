"""JAX generators of BabyAI levels (minigrid 3.2.0's generation rules, seeded by a PRNG key).

Layouts do not match minigrid's RNG draw for draw, but follow the same rules: room sizes and
room grid (`RoomGrid`), walls, door placement and colours, object kinds and colours, the
`reject_next_to` rule (no object within Manhattan distance 1 of where the agent is at that
moment), the agent's placement (`RoomGrid.place_agent`: a random free cell and direction whose
front cell is empty or a wall), `check_objs_reachable` rejection, and each level's instruction.
Minigrid's rejection sampling draws uniformly among what it accepts; here each draw is a
categorical over the accepted choices (the same distribution) and whole-layout rejections
(`check_objs_reachable`) loop in `lax.while_loop` (building blocks: `jax_layout`).

`make_jax_level(name) -> (env, params)` builds one (`LEVELS` lists the names).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grace.tasks.babyai.jax_grid import (
    BALL,
    CLOSED,
    DOOR,
    GOTO,
    OPEN_VERB,
    PICK,
    GridLevel,
    GridState,
)
from grace.tasks.babyai.jax_layout import (
    LOC_CODES,
    N_COLORS,
    OBJ_KINDS,
    RED,
    Draws,
    add_objects,
    distinct_colours,
    loc_matches,
    new_state,
    objects_reachable,
    pick,
    place_agent,
    randint,
    rejection,
    room_walls,
)


class SingleRoomLevel(GridLevel):
    """One room of `room_size` (8: an 8x8 grid, 6x6 free cells)."""

    room_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.walls = jnp.asarray(room_walls(self.room_size, 1, 1))
        self.width = self.height = self.room_size
        self.region = jnp.ones((self.width, self.height), bool)


class GoToLocal(SingleRoomLevel):
    """BabyAI-GoToLocal-v0: agent first, `num_dists` random objects away from it, all reachable;
    go to one of them (by kind and colour: every matching object counts)."""

    name_ = "BabyAI-GoToLocal-v0"
    num_dists = 8
    check_reachable = True
    verb = GOTO
    max_steps = 64

    def objects(self, draws: Draws, grid: jax.Array, pos: jax.Array) -> tuple[jax.Array, Any, Any]:
        """Add the objects; returns (grid, target kind, target colour)."""
        grid, placed = add_objects(draws, grid, self.region, pos, self.num_dists)
        which = placed[randint(draws.take(), 0, self.num_dists)]
        target = grid[which[0], which[1]]
        return grid, target[0], target[1]

    def layout(self, key: jax.Array) -> GridState:
        draws = Draws(key, 3 * self.num_dists + 6)
        grid = self.walls
        pos, direction = place_agent(draws.take(), grid, self.region)
        grid, kind, colour = self.objects(draws, grid, pos)
        tgt = (grid[..., 0] == kind) & (grid[..., 1] == colour)
        return new_state(grid, tgt, pos, direction, (GOTO, kind, colour, 0, -1, -1))

    def generate(self, key: jax.Array) -> GridState:
        if not self.check_reachable:
            return self.layout(key)
        return rejection(self.layout, lambda s: objects_reachable(s.grid, s.agent_pos), key)


class GoToRedBall(GoToLocal):
    """BabyAI-GoToRedBall-v0: a red ball then 7 random distractors (red balls among them count)."""

    name_ = "BabyAI-GoToRedBall-v0"
    num_dists = 7

    def objects(self, draws: Draws, grid: jax.Array, pos: jax.Array) -> tuple[jax.Array, Any, Any]:
        grid, _ = add_objects(draws, grid, self.region, pos, 1 + self.num_dists, first=(BALL, RED))
        return grid, jnp.int32(BALL), jnp.int32(RED)


class GoToObj(GoToLocal):
    """BabyAI-GoToObj-v0: one random object, go to it (no reachability check in minigrid)."""

    name_ = "BabyAI-GoToObj-v0"
    num_dists = 1
    check_reachable = False


class PickupLoc(SingleRoomLevel):
    """BabyAI-PickupLoc-v0 (LevelGen, one room): 8 objects away from the room's centre, then the
    agent, all reachable; pick up an object described by kind, maybe colour (1 in 7: none),
    maybe location relative to the agent's start (1 in 2), among descriptions matching >= 1."""

    name_ = "BabyAI-PickupLoc-v0"
    verb = PICK
    max_steps = 64
    num_dists = 8

    def layout(self, key: jax.Array) -> GridState:
        draws = Draws(key, 3 * self.num_dists + 1)
        centre = jnp.array([self.room_size // 2] * 2, jnp.int32)  # RoomGrid's initial agent_pos
        grid, _ = add_objects(draws, self.walls, self.region, centre, self.num_dists)
        pos, direction = place_agent(draws.take(), grid, self.region)
        return new_state(grid, jnp.zeros(grid.shape[:2], bool), pos, direction, (PICK, 0, -1, 0, -1, -1))

    def describe(self, key: jax.Array, state: GridState) -> GridState:
        """`LevelGen.rand_obj(types=[box, ball, key])`: weights colour 1/7 (None or one of 6),
        kind 1/3, location None 1/2 else 1/8 each; among descriptions matching an object."""
        kind, colour = state.grid[..., 0], state.grid[..., 1]
        locs = loc_matches(state.agent_pos, state.agent_dir, kind.shape)
        loc_any = jnp.concatenate([jnp.ones((1,) + kind.shape, bool), locs])  # (5, W, H)
        col_any = jnp.arange(-1, N_COLORS)
        match = ((kind[None, None, None] == OBJ_KINDS[:, None, None, None, None])
                 & ((col_any[None, :, None, None, None] < 0)
                    | (colour[None, None, None] == col_any[None, :, None, None, None]))
                 & loc_any[None, None])  # (kind 3, colour 7, loc 5, W, H)
        weight = jnp.array([0.5, 0.125, 0.125, 0.125, 0.125])
        weights = jnp.where(jnp.any(match, axis=(-2, -1)), weight[None, None], 0.0)
        i = pick(jax.random.uniform(key), weights)
        ki, ci, li = i // 35, (i // 5) % 7, i % 5
        loc = li  # loc_any's order is m_loc's: none, front, behind, left, right
        mission = jnp.stack([jnp.int32(PICK), OBJ_KINDS[ki], col_any[ci], loc, jnp.int32(-1), jnp.int32(-1)])
        return state.replace(tgt=match[ki, ci, li].astype(jnp.int32), mission=mission.astype(jnp.int32))

    def generate(self, key: jax.Array) -> GridState:
        kl, kd = jax.random.split(key)
        state = rejection(self.layout, lambda s: objects_reachable(s.grid, s.agent_pos), kl)
        return self.describe(kd, state)


class DoorsLevel(GridLevel):
    """3x3 rooms; doors only on the centre room's walls (closed, unlocked); the agent inside it."""

    room_size = 8

    def __init__(self) -> None:
        super().__init__()
        self.walls = jnp.asarray(room_walls(self.room_size, 3, 3))
        self.width = self.height = 3 * (self.room_size - 1) + 1
        lo, hi = self.room_size - 1, 2 * (self.room_size - 1)  # the centre room's walls
        region = np.zeros((self.width, self.height), bool)
        region[lo:hi + 1, lo:hi + 1] = True
        self.region = jnp.asarray(region)
        self.lo, self.hi = lo, hi

    def door_cells(self, u: jax.Array) -> jax.Array:
        """[right, down, left, up] door positions (4, 2): a random cell of each wall."""
        r = randint(u, self.lo + 1, self.hi)
        lo, hi = self.lo, self.hi
        return jnp.stack([jnp.stack([hi, r[0]]), jnp.stack([r[1], hi]),
                          jnp.stack([lo, r[2]]), jnp.stack([r[3], lo])]).astype(jnp.int32)

    def with_doors(self, doors: jax.Array, colours: jax.Array) -> jax.Array:
        grid = self.walls
        for d in range(doors.shape[0]):
            cell = jnp.stack([jnp.int32(DOOR), colours[d], jnp.int32(CLOSED)])
            grid = grid.at[doors[d, 0], doors[d, 1]].set(cell)
        return grid


class OpenDoor(DoorsLevel):
    """BabyAI-OpenDoor-v0: four doors of distinct colours around the centre room; open the right
    one, named by colour, or (1 in 2) a door named by location relative to the agent's start."""

    name_ = "BabyAI-OpenDoor-v0"
    verb = OPEN_VERB
    max_steps = 8 ** 2 * 9
    select_by: str | None = None
    """None: by colour or by location, 1 in 2 each (OpenDoor); "color" (OpenDoorColor)."""

    def generate(self, key: jax.Array) -> GridState:
        draws = Draws(key, 11)
        doors = self.door_cells(draws.take(4))
        colours = distinct_colours(draws.take(4))
        grid = self.with_doors(doors, colours)
        pos, direction = place_agent(draws.take(), grid, self.region)
        by_colour = draws.take() < 0.5 if self.select_by is None else jnp.array(self.select_by == "color")
        li = randint(draws.take(), 0, 4)
        is_door = grid[..., 0] == DOOR
        at_loc = loc_matches(pos, direction, is_door.shape)[li] & is_door & self.region
        first = jnp.zeros(is_door.shape, bool).at[doors[0, 0], doors[0, 1]].set(True)
        tgt = jnp.where(by_colour, first, at_loc)
        mission = (OPEN_VERB, DOOR, jnp.where(by_colour, colours[0], -1),
                   jnp.where(by_colour, 0, jnp.array(LOC_CODES)[li]), -1, -1)
        return new_state(grid, tgt, pos, direction, mission)


class OpenDoorColor(OpenDoor):
    """BabyAI-OpenDoorColor-v0: OpenDoor named by colour only ("open the blue door" among four
    doors of distinct colours). minigrid 3.2.0 has no OpenMatchingDoor; this is its stand-in."""

    name_ = "BabyAI-OpenDoorColor-v0"
    select_by = "color"


class OpenTwoDoors(DoorsLevel):
    """BabyAI-OpenTwoDoors-v0: rooms of 6, a door on the centre room's left wall (first colour)
    and one on its right wall (second colour); open the first, then the second."""

    name_ = "BabyAI-OpenTwoDoors-v0"
    room_size = 6
    verb = OPEN_VERB
    two_stage = True
    max_steps = 20 * 6 ** 2

    def generate(self, key: jax.Array) -> GridState:
        draws = Draws(key, 7)
        doors = self.door_cells(draws.take(4))[jnp.array([2, 0])]  # door1 left, door2 right
        colours = distinct_colours(draws.take(2))
        grid = self.with_doors(doors, colours)
        pos, direction = place_agent(draws.take(), grid, self.region)
        tgt = jnp.zeros(grid.shape[:2], jnp.int32)
        tgt = tgt.at[doors[0, 0], doors[0, 1]].set(1).at[doors[1, 0], doors[1, 1]].set(2)
        return new_state(grid, tgt, pos, direction, (OPEN_VERB, DOOR, colours[0], 0, DOOR, colours[1]))


LEVELS: dict[str, type[GridLevel]] = {
    cls.name_: cls for cls in (GoToRedBall, GoToLocal, GoToObj, PickupLoc, OpenDoor, OpenDoorColor,
                                      OpenTwoDoors)
}


def make_jax_level(name: str) -> tuple[GridLevel, Any]:
    """(env, params) of a BabyAI level's JAX twin; `name` with or without "BabyAI-" / "-v0"."""
    full = name if name.startswith("BabyAI-") else f"BabyAI-{name}"
    full = full if full.endswith("-v0") else f"{full}-v0"
    if full not in LEVELS:
        raise ValueError(f"no JAX twin of BabyAI level {name!r}; known: {', '.join(LEVELS)}")
    env = LEVELS[full]()
    return env, env.default_params


def succeeded(episode_return: float, terminated: bool, obs: Any = None) -> bool:
    """A `Task.success` for the levels: the instruction's verifier ended the episode (minigrid's
    reward is > 0 exactly then)."""
    return bool(terminated)
