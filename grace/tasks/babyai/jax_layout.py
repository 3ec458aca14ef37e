"""Building blocks of the BabyAI level generators in JAX (minigrid 3.2.0's `RoomGrid` rules).

Randomness: one `Draws` per layout (one random-bits call: XLA compiles each separately, slowly
on CPU); `pick` draws an index among weighted / allowed cells as minigrid's rejection sampling
does (uniform among what it accepts). `objects_reachable` is `check_objs_reachable`,
`rejection` redraws a whole layout until it holds.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from grace.tasks.babyai.jax_grid import (
    DIR_TO_VEC,
    DOOR,
    EMPTY,
    EMPTY_CELL,
    WALL,
    WALL_CELL,
    GridState,
)

RED = 0
N_COLORS = 6
OBJ_KINDS = jnp.array([5, 6, 7], jnp.int32)  # key, ball, box
LOC_CODES = (1, 2, 3, 4)
"""m_loc of the shared vector: front, behind, left, right (0: no location)."""


def room_walls(room_size: int, rows: int, cols: int) -> np.ndarray:
    """`RoomGrid._gen_grid`'s walls: (W, H, 3) cells, every room's outline a wall."""
    w, h = (room_size - 1) * cols + 1, (room_size - 1) * rows + 1
    grid = np.tile(np.array(EMPTY_CELL, np.int32), (w, h, 1))
    for x in range(0, w, room_size - 1):
        grid[x, :] = WALL_CELL
    for y in range(0, h, room_size - 1):
        grid[:, y] = WALL_CELL
    return grid


class Draws:
    """Uniform [0, 1) numbers drawn in one call and handed out in order: XLA compiles each
    random-bits call separately (and slowly, on CPU), so a layout makes exactly one."""

    def __init__(self, key: jax.Array, n: int) -> None:
        self.u = jax.random.uniform(key, (n,))
        self.used = 0

    def take(self, n: int | None = None) -> jax.Array:
        k = 1 if n is None else n
        if self.used + k > self.u.shape[0]:
            raise ValueError(f"layout needs more than {self.u.shape[0]} random draws")
        out = self.u[self.used:self.used + k]
        self.used += k
        return out[0] if n is None else out


def _first_above(cum: jax.Array, x: jax.Array, weights: jax.Array) -> jax.Array:
    """The first index whose cumulative weight exceeds `x` (the last positive one if rounding
    leaves none)."""
    last = weights.shape[0] - 1 - jnp.argmax(weights[::-1] > 0)
    return jnp.where(jnp.any(cum > x), jnp.argmax(cum > x), last)


def pick(u: jax.Array, weights: jax.Array) -> jax.Array:
    """A flat index drawn with probability proportional to `weights` (>= 0), from uniform `u`;
    bool weights draw uniformly among the True entries. Two levels (a block, then an entry of
    it, from the same `u`): XLA's CPU cumsum is slow on long vectors."""
    w = weights.reshape(-1).astype(jnp.float32)
    n = w.shape[0]
    cols = int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    w = jnp.pad(w, (0, rows * cols - n)).reshape(rows, cols)
    per_row = w.sum(axis=1)
    cum = jnp.cumsum(per_row)
    x = u * cum[-1]
    r = _first_above(cum, x, per_row)
    c = _first_above(jnp.cumsum(w[r]), x - (cum[r] - per_row[r]), w[r])
    return (r * cols + c).astype(jnp.int32)


def randint(u: jax.Array, low: int, high: int) -> jax.Array:
    """An integer in [low, high) from uniform `u`."""
    return (low + jnp.minimum(jnp.floor(u * (high - low)), high - low - 1)).astype(jnp.int32)


def near(shape: tuple[int, int], pos: jax.Array) -> jax.Array:
    """Cells within Manhattan distance 1 of `pos` (`reject_next_to`, and the agent's own cell)."""
    x, y = jnp.meshgrid(jnp.arange(shape[0]), jnp.arange(shape[1]), indexing="ij")
    return jnp.abs(x - pos[0]) + jnp.abs(y - pos[1]) < 2


def add_objects(draws: Draws, grid: jax.Array, region: jax.Array, agent_pos: jax.Array, n: int,
                first: tuple[int, int] | None = None) -> tuple[jax.Array, jax.Array]:
    """`RoomGrid.add_object` `n` times (a `lax.scan`): a random kind and colour (the first one
    given by `first`, if set) on a free cell of `region` away from the agent. Returns (grid,
    positions (n, 2))."""
    kinds = OBJ_KINDS[randint(draws.take(n), 0, 3)]
    colours = randint(draws.take(n), 0, N_COLORS)
    if first is not None:
        kinds, colours = kinds.at[0].set(first[0]), colours.at[0].set(first[1])
    away = ~near(grid.shape[:2], agent_pos) & region

    def put(g: jax.Array, x: tuple[jax.Array, ...]) -> tuple[jax.Array, jax.Array]:
        u, kind, colour = x
        idx = pick(u, away & (g[..., 0] == EMPTY))
        pos = jnp.stack([idx // g.shape[1], idx % g.shape[1]]).astype(jnp.int32)
        cell = jnp.stack([kind, colour, jnp.int32(0)]).astype(jnp.int32)
        return g.at[pos[0], pos[1]].set(cell), pos

    return jax.lax.scan(put, grid, (draws.take(n), kinds, colours))


def place_agent(u: jax.Array, grid: jax.Array, region: jax.Array) -> tuple[jax.Array, jax.Array]:
    """`RoomGrid.place_agent`: a free cell of `region` and a direction whose front cell is
    empty or a wall, uniform over such (cell, direction) pairs. Returns (pos, dir)."""
    free = region & (grid[..., 0] == EMPTY)
    padded = jnp.pad(grid[..., 0], 1, constant_values=WALL)
    w, h = free.shape
    fronts = jnp.stack([padded[1 + dx:1 + dx + w, 1 + dy:1 + dy + h]
                        for dx, dy in np.asarray(DIR_TO_VEC)], axis=-1)
    valid = free[..., None] & ((fronts == EMPTY) | (fronts == WALL))
    idx = pick(u, valid)
    cell, direction = idx // 4, idx % 4
    return jnp.stack([cell // h, cell % h]).astype(jnp.int32), direction.astype(jnp.int32)


def _spread(reach: jax.Array, passable: jax.Array) -> jax.Array:
    """Reach every passable cell of a run (along axis 0) of passable cells that holds a reached one."""
    run = jnp.cumsum(~passable, axis=0)  # cells of one run share this id
    same = (run[:, None] == run[None, :]) & passable[:, None] & passable[None, :]  # (W, W, H)
    return reach | jnp.any(same & reach[None, :], axis=1)


def objects_reachable(grid: jax.Array, agent_pos: jax.Array) -> jax.Array:
    """`check_objs_reachable`: every non-wall object is reachable from the agent through empty
    cells and doors (the object cells themselves are reached, not crossed). The flood fill
    spreads along whole rows, then whole columns, until nothing changes."""
    passable = (grid[..., 0] == EMPTY) | (grid[..., 0] == DOOR)
    start = jnp.zeros(passable.shape, bool).at[agent_pos[0], agent_pos[1]].set(True)

    def body(carry: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        r, _ = carry
        new = _spread(_spread(r, passable).T, passable.T).T
        return new, jnp.any(new != r)

    reach, _ = jax.lax.while_loop(lambda c: c[1], body, (start, jnp.array(True)))
    p = jnp.pad(reach, 1)
    near_reach = reach | p[2:, 1:-1] | p[:-2, 1:-1] | p[1:-1, 2:] | p[1:-1, :-2]
    objects = (grid[..., 0] != EMPTY) & (grid[..., 0] != WALL)
    return jnp.all(~objects | near_reach)


def loc_matches(agent_pos: jax.Array, agent_dir: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """(4, W, H) bool: cells in front of / behind / left of / right of the agent (ObjDesc.loc)."""
    x, y = jnp.meshgrid(jnp.arange(shape[0]), jnp.arange(shape[1]), indexing="ij")
    vx, vy = x - agent_pos[0], y - agent_pos[1]
    d = DIR_TO_VEC[agent_dir]
    ahead = vx * d[0] + vy * d[1]
    side = vx * -d[1] + vy * d[0]
    return jnp.stack([ahead > 0, ahead < 0, side < 0, side > 0])


def new_state(grid: jax.Array, tgt: jax.Array, pos: jax.Array, direction: jax.Array,
              mission: tuple[Any, ...]) -> GridState:
    return GridState(grid=grid, tgt=tgt.astype(jnp.int32), agent_pos=pos, agent_dir=direction,
                     carry=jnp.array(EMPTY_CELL, jnp.int32), carry_tgt=jnp.int32(0),
                     mission=jnp.stack([jnp.asarray(m, jnp.int32) for m in mission]),
                     stage=jnp.int32(0), time=jnp.int32(0))


def distinct_colours(u: jax.Array) -> jax.Array:
    """`_rand_subset(COLOR_NAMES, len(u))`: distinct colours in random order."""
    left = jnp.ones(N_COLORS, bool)
    out = []
    for i in range(u.shape[0]):
        c = pick(u[i], left)
        out.append(c)
        left = left.at[c].set(False)
    return jnp.stack(out)


def rejection(gen: Any, ok: Any, key: jax.Array) -> Any:
    """Draw `gen(key)` until `ok(draw)` (a level's whole-layout rejection); `gen` is traced once.
    Vmapped over envs the loop runs until every lane has accepted (~4 rounds for 1024 lanes at
    GoToRedBall's 15% rejection): most of the cost of a reset."""
    def body(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        i, _, _ = carry
        draw = gen(jax.random.fold_in(key, i))
        return i + 1, draw, ok(draw)

    blank = jax.tree_util.tree_map(lambda v: jnp.zeros(v.shape, v.dtype), jax.eval_shape(gen, key))
    return jax.lax.while_loop(lambda c: ~c[2], body, (jnp.int32(0), blank, jnp.array(False)))[1]
