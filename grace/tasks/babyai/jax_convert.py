"""A minigrid BabyAI env's current state as the JAX twin's `GridState` (tests and debugging).

`state_from_minigrid(env)` reads the grid, the agent, what it carries, the step count and the
level's instruction (which objects it refers to, by identity, as BabyAI's verifier does, and the
mission fields of the shared observation vector). minigrid is imported by the caller's env only.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from grace.tasks.babyai.jax_grid import EMPTY_CELL, GOTO, OPEN_VERB, PICK, PUTNEXT, GridState

LOC_TO_CODE = {None: 0, "front": 1, "behind": 2, "left": 3, "right": 4}


def _clauses(instrs: Any) -> tuple[str, Any, Any]:
    """(kind, first object description, second description or None) of a level's instruction:
    an action instruction, or BeforeInstr of two (OpenTwoDoors)."""
    kind = type(instrs).__name__
    if kind == "BeforeInstr":
        first, _, _ = _clauses(instrs.instr_a)
        return f"before:{first}", instrs.instr_a.desc, instrs.instr_b.desc
    if kind == "PutNextInstr":
        return kind, instrs.desc_move, instrs.desc_fixed
    if kind in ("GoToInstr", "PickupInstr", "OpenInstr"):
        return kind, instrs.desc, None
    raise ValueError(f"unsupported BabyAI instruction {kind}")


def mission_fields(instrs: Any) -> list[int]:
    """m_verb, m_type, m_color, m_loc, m2_type, m2_color of the shared observation vector."""
    from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX

    kind, a, b = _clauses(instrs)
    verb = {"GoToInstr": GOTO, "PickupInstr": PICK, "OpenInstr": OPEN_VERB,
            "PutNextInstr": PUTNEXT}[kind.split(":")[-1]]

    def obj(d: Any) -> list[int]:
        if d is None:
            return [-1, -1]
        return [OBJECT_TO_IDX[d.type] if d.type else -1, COLOR_TO_IDX[d.color] if d.color else -1]

    return [verb, *obj(a), LOC_TO_CODE[a.loc], *obj(b)]


def state_from_minigrid(env: Any) -> GridState:
    """The JAX twin's state for a (reset or stepped) minigrid BabyAI level."""
    env = env.unwrapped
    w, h = env.grid.width, env.grid.height
    grid = np.tile(np.array(EMPTY_CELL, np.int32), (w, h, 1))
    tgt = np.zeros((w, h), np.int32)
    _, a, b = _clauses(env.instrs)
    marked = [(1, a), (2, b if type(env.instrs).__name__ == "BeforeInstr" else None)]
    carry_tgt = 0
    for bit, desc in marked:
        for obj in [] if desc is None else desc.obj_set:
            if obj is env.carrying:
                carry_tgt |= bit
    for x in range(w):
        for y in range(h):
            cell = env.grid.get(x, y)
            if cell is None:
                continue
            grid[x, y] = cell.encode()
            for bit, desc in marked:
                if desc is not None and any(cell is o for o in desc.obj_set):
                    tgt[x, y] |= bit
    carry = EMPTY_CELL if env.carrying is None else env.carrying.encode()
    stage = int(getattr(env.instrs, "a_done", None) == "success")
    return GridState(
        grid=jnp.asarray(grid), tgt=jnp.asarray(tgt),
        agent_pos=jnp.asarray(np.asarray(env.agent_pos), jnp.int32), agent_dir=jnp.int32(env.agent_dir),
        carry=jnp.asarray(carry, jnp.int32), carry_tgt=jnp.int32(carry_tgt),
        mission=jnp.asarray(mission_fields(env.instrs), jnp.int32), stage=jnp.int32(stage),
        time=jnp.int32(env.step_count))
