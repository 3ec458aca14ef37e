"""A small JAX port of the minigrid mechanics BabyAI levels need (minigrid 3.2.0 semantics).

The grid is one int32 array `(W, H, 3)` indexed `[x, y]` holding minigrid's own cell encoding
(object id, colour id, state id; an empty cell is `(1, 0, 0)`, minigrid's encoding of None), so
the egocentric view is a gather. `tgt` (W, H) marks the objects the instruction refers to (bit 1:
the instruction's object set, bit 2: the second clause's, OpenTwoDoors); the marks travel with
an object when it is picked up and dropped, as minigrid's verifier tracks objects by identity.

Mechanics (`MiniGridEnv.step`): left, right, forward (into an empty cell or an open door), pickup
(a key, ball or box, into an empty hand), drop (onto an empty front cell), toggle (a door opens
or closes; a locked one opens only while carrying the key of its colour; a box is replaced by
its contents, always nothing here), done (no-op). The observation is minigrid's `gen_obs` with
`see_through_walls=False` (`Grid.process_vis`): walls and closed doors occlude, cells outside
the grid read as walls, the carried object sits in the agent's own view cell (3, 6).

Instruction verifiers (BabyAI's `verifier.py`, non-strict, no done-action mode), checked after
every step on the new state: go to = the front cell holds a marked object; pick up = the pickup
action moved a marked object into a hand that was empty; open = the toggle action left a marked
door in front open; `two_stage` = BeforeInstr(open A, open B): B counts once A has succeeded
(on the same step too). Success ends the episode with minigrid's `1 - 0.9 * steps / max_steps`.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

# minigrid.core.constants (checked against minigrid by tests/tasks/test_babyai_jax.py)
EMPTY, WALL, DOOR, KEY, BALL, BOX = 1, 2, 4, 5, 6, 7
OPEN, CLOSED, LOCKED = 0, 1, 2
GREY = 5
EMPTY_CELL = (EMPTY, 0, 0)
WALL_CELL = (WALL, GREY, 0)
VIEW = 7
"""minigrid's agent_view_size."""
DIR_TO_VEC = jnp.array([[1, 0], [0, 1], [-1, 0], [0, -1]], jnp.int32)
LEFT, RIGHT, FORWARD, PICKUP, DROP, TOGGLE, DONE = range(7)
GOTO, PICK, OPEN_VERB, PUTNEXT = 0, 1, 2, 3
"""m_verb values of the shared observation vector."""
OBS_DIM = VIEW * VIEW * 3 + 1 + 6 + 1


@struct.dataclass
class GridState:
    grid: jax.Array  # (W, H, 3) int32
    tgt: jax.Array  # (W, H) int32 instruction marks
    agent_pos: jax.Array  # (2,) int32, [x, y]
    agent_dir: jax.Array  # () int32, 0 right, 1 down, 2 left, 3 up
    carry: jax.Array  # (3,) int32, EMPTY_CELL when the hand is empty
    carry_tgt: jax.Array  # () int32 marks of the carried object
    mission: jax.Array  # (6,) int32: verb, type, color, loc, type2, color2
    stage: jax.Array  # () int32: 1 once the first clause of a two-stage instruction succeeded
    time: jax.Array  # () int32 step count


@struct.dataclass
class GridParams(environment.EnvParams):
    max_steps_in_episode: int = 64


def front_pos(pos: jax.Array, direction: jax.Array) -> jax.Array:
    return pos + DIR_TO_VEC[direction]


def view_coords(pos: jax.Array, direction: jax.Array) -> jax.Array:
    """Absolute [x, y] of every egocentric view cell, shape (7, 7, 2) indexed [vx, vy]:
    pos + (vx - 3) * right + (6 - vy) * forward (minigrid's `get_view_coords`, inverted)."""
    d = DIR_TO_VEC[direction]
    right = jnp.array([-d[1], d[0]])
    v = jnp.arange(VIEW)
    side = (v - VIEW // 2)[:, None, None] * right
    ahead = (VIEW - 1 - v)[None, :, None] * d
    return pos + side + ahead


def _row_visibility(seed: jax.Array, clear: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One row of `Grid.process_vis`: the row's final mask and the marks it puts on the row above.

    The left-to-right pass spreads visibility right through transparent cells, then the
    right-to-left pass spreads it left; a visible transparent cell marks the cell above it and the
    one above its neighbour in the pass direction (the last cell of each pass marks nothing)."""
    n = seed.shape[0]
    idx = jnp.arange(n)
    opaque = (~clear).astype(jnp.int32)
    before = jnp.concatenate([jnp.zeros(1, jnp.int32), jnp.cumsum(opaque)[:-1]])  # opaque in [0, i)
    after = jnp.sum(opaque) - jnp.cumsum(opaque)  # opaque in (i, n)
    # lr[i] = any k <= i: seed[k] and no opaque cell in [k, i)
    reach_lr = (idx[:, None] <= idx[None, :]) & (before[:, None] == before[None, :])
    lr = jnp.any(seed[:, None] & reach_lr, axis=0)
    reach_rl = (idx[:, None] >= idx[None, :]) & (after[:, None] == after[None, :])
    rl = jnp.any(lr[:, None] & reach_rl, axis=0)
    src_lr = lr & clear & (idx < n - 1)
    src_rl = rl & clear & (idx > 0)
    up = src_lr | jnp.roll(src_lr, 1) | src_rl | jnp.roll(src_rl, -1)
    return rl, up


def visibility(clear: jax.Array) -> jax.Array:
    """`Grid.process_vis` on the rotated view: (7, 7) bool [vx, vy], the agent at (3, 6); rows
    from the agent's (vy = 6) up, each seeded by the marks of the row below."""
    def row(seed: jax.Array, clear_row: jax.Array) -> tuple[jax.Array, jax.Array]:
        mask, up = _row_visibility(seed, clear_row)
        return up, mask

    seed = jnp.zeros(VIEW, bool).at[VIEW // 2].set(True)
    _, rows = jax.lax.scan(row, seed, clear.T[::-1])
    return rows[::-1].T


def view_image(state: GridState) -> jax.Array:
    """minigrid's `obs["image"]` (7, 7, 3) int32 for `state`."""
    w, h = state.grid.shape[:2]
    xy = view_coords(state.agent_pos, state.agent_dir)
    inside = (xy[..., 0] >= 0) & (xy[..., 0] < w) & (xy[..., 1] >= 0) & (xy[..., 1] < h)
    cells = state.grid[jnp.clip(xy[..., 0], 0, w - 1), jnp.clip(xy[..., 1], 0, h - 1)]
    cells = jnp.where(inside[..., None], cells, jnp.array(WALL_CELL, jnp.int32))
    clear = ~((cells[..., 0] == WALL) | ((cells[..., 0] == DOOR) & (cells[..., 2] != OPEN)))
    image = jnp.where(visibility(clear)[..., None], cells, 0)
    return image.at[VIEW // 2, VIEW - 1].set(state.carry)


def observation(state: GridState, max_steps: int) -> jax.Array:
    """The shared 155-float BabyAI observation vector."""
    return jnp.concatenate([
        view_image(state).reshape(-1).astype(jnp.float32),
        state.agent_dir.reshape(1).astype(jnp.float32),
        state.mission.astype(jnp.float32),
        (state.time / max_steps).reshape(1).astype(jnp.float32),
    ])


def move(state: GridState, action: jax.Array) -> GridState:
    """minigrid's `MiniGridEnv.step` mechanics for one action (no verifier, no time)."""
    fwd = front_pos(state.agent_pos, state.agent_dir)
    cell = state.grid[fwd[0], fwd[1]]
    kind, colour, door_state = cell[0], cell[1], cell[2]
    hand_empty = state.carry[0] == EMPTY
    empty_cell = jnp.array(EMPTY_CELL, jnp.int32)

    turn = jnp.where(action == LEFT, -1, jnp.where(action == RIGHT, 1, 0))
    new_dir = (state.agent_dir + turn) % 4
    passable = (kind == EMPTY) | ((kind == DOOR) & (door_state == OPEN))
    new_pos = jnp.where((action == FORWARD) & passable, fwd, state.agent_pos)

    pick = (action == PICKUP) & hand_empty & ((kind == KEY) | (kind == BALL) | (kind == BOX))
    drop = (action == DROP) & ~hand_empty & (kind == EMPTY)
    toggle = action == TOGGLE
    unlock = (door_state == LOCKED) & (state.carry[0] == KEY) & (state.carry[1] == colour)
    door_next = jnp.where(door_state == LOCKED, jnp.where(unlock, OPEN, LOCKED),
                          jnp.where(door_state == OPEN, CLOSED, OPEN))
    toggled = jnp.where(kind == DOOR, cell.at[2].set(door_next), empty_cell)
    toggle_changes = toggle & ((kind == DOOR) | (kind == BOX))

    new_cell = jnp.where(pick, empty_cell, jnp.where(drop, state.carry,
                                                     jnp.where(toggle_changes, toggled, cell)))
    cell_tgt = state.tgt[fwd[0], fwd[1]]
    box_gone = toggle & (kind == BOX)
    new_tgt = jnp.where(pick | box_gone, 0, jnp.where(drop, state.carry_tgt, cell_tgt))
    return state.replace(
        grid=state.grid.at[fwd[0], fwd[1]].set(new_cell),
        tgt=state.tgt.at[fwd[0], fwd[1]].set(new_tgt),
        agent_pos=new_pos, agent_dir=new_dir,
        carry=jnp.where(pick, cell, jnp.where(drop, empty_cell, state.carry)),
        carry_tgt=jnp.where(pick, cell_tgt, jnp.where(drop, 0, state.carry_tgt)),
    )


def _front_marked_open_door(state: GridState, bit: int) -> jax.Array:
    fwd = front_pos(state.agent_pos, state.agent_dir)
    cell = state.grid[fwd[0], fwd[1]]
    marked = (state.tgt[fwd[0], fwd[1]] & bit) > 0
    return marked & (cell[0] == DOOR) & (cell[2] == OPEN)


def verify(before: GridState, after: GridState, action: jax.Array, verb: int,
           two_stage: bool) -> tuple[jax.Array, jax.Array]:
    """(success, new stage) of the level's instruction after one step (BabyAI's verifiers)."""
    if verb == GOTO:
        fwd = front_pos(after.agent_pos, after.agent_dir)
        return (after.tgt[fwd[0], fwd[1]] & 1) > 0, after.stage
    if verb == PICK:
        picked = (action == PICKUP) & (before.carry[0] == EMPTY) & ((after.carry_tgt & 1) > 0)
        return picked, after.stage
    if verb == OPEN_VERB:
        first = (action == TOGGLE) & _front_marked_open_door(after, 1)
        if not two_stage:
            return first, after.stage
        stage = jnp.maximum(after.stage, first.astype(jnp.int32))
        second = (stage > 0) & (action == TOGGLE) & _front_marked_open_door(after, 2)
        return second, stage
    raise ValueError(f"unsupported verb {verb}")


class GridLevel(environment.Environment):
    """A BabyAI level as a gymnax (0.0.9) environment. Subclasses set the static level
    configuration and implement `generate(key) -> GridState` (the level generator)."""

    name_: str = "BabyAI-Grid"
    width: int = 8
    height: int = 8
    verb: int = GOTO
    two_stage: bool = False
    max_steps: int = 64

    @property
    def default_params(self) -> GridParams:
        return GridParams(max_steps_in_episode=self.max_steps)

    def generate(self, key: jax.Array) -> GridState:
        raise NotImplementedError

    def step_env(self, key: jax.Array, state: GridState, action: Any, params: GridParams):  # noqa: D102
        action = jnp.asarray(action, jnp.int32)
        moved = move(state, action)
        success, stage = verify(state, moved, action, self.verb, self.two_stage)
        time = state.time + 1
        moved = moved.replace(stage=stage, time=time)
        reward = jnp.where(success, 1.0 - 0.9 * time / params.max_steps_in_episode, 0.0)
        done = success | (time >= params.max_steps_in_episode)
        info = {"success": success}
        return (jax.lax.stop_gradient(self.get_obs(moved, params)), jax.lax.stop_gradient(moved),
                reward.astype(jnp.float32), done, info)

    def reset_env(self, key: jax.Array, params: GridParams):  # noqa: D102
        state = self.generate(key)
        return self.get_obs(state, params), state

    def get_obs(self, state: GridState, params: Any = None, key: Any = None) -> jax.Array:  # noqa: D102
        steps = self.max_steps if params is None else params.max_steps_in_episode
        return observation(state, steps)

    def is_terminal(self, state: GridState, params: GridParams) -> jax.Array:  # noqa: D102
        return jnp.asarray(state.time >= params.max_steps_in_episode)

    @property
    def name(self) -> str:  # noqa: D102
        return self.name_

    @property
    def num_actions(self) -> int:  # noqa: D102
        return 7

    def action_space(self, params: Any = None) -> spaces.Discrete:  # noqa: D102
        return spaces.Discrete(7)

    def observation_space(self, params: Any) -> spaces.Box:  # noqa: D102
        return spaces.Box(-1.0, 10.0, (OBS_DIM,), jnp.float32)
