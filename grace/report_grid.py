"""The report's worst-scored examples; for a task with a categorical grid field, each example's
grid drawn as a small inline SVG (no script, no external reference: the page stays
self-contained).

A (H, W, 3) categorical grid is read as minigrid's encoding (object, colour, state ids;
`grace.tasks.babyai.encoding`, the ids of minigrid's OBJECT_TO_IDX / COLOR_TO_IDX /
STATE_TO_IDX): image[i, j] is view column i, row j; the observer stands at the field's `focus`
facing row 0 (BabyAI: (3, 6)). Any other categorical grid is drawn as ids in cells.
"""

from __future__ import annotations

from html import escape
from typing import Any

from grace.tasks.babyai.encoding import COLORS, LOCS, OBJECTS, STATES, VERBS
from grace.tasks.spec import Field, ObsSchema

CELL = 18
"""Pixels per grid cell."""
RGB = {"RED": "#ff0000", "GREEN": "#00ff00", "BLUE": "#0000ff", "PURPLE": "#7027c3",
       "YELLOW": "#ffff00", "GREY": "#646464"}
"""minigrid's rendering colours (minigrid.core.constants.COLORS) by COLOR_TO_IDX name."""
_OBJ = {v: k for k, v in OBJECTS.items()}
_COL = {v: k for k, v in COLORS.items()}
_STATE = {v: k for k, v in STATES.items()}
_VERB = {v: k.removeprefix("VERB_").lower().replace("goto", "go to").replace("putnext", "put next")
         for k, v in VERBS.items()}
_LOC = {v: k.removeprefix("LOC_").lower() for k, v in LOCS.items()}
MISSION = ("m_verb", "m_type", "m_color", "m_loc", "m2_type", "m2_color")


_FILLED = {"UNSEEN": "#3a3a3a", "WALL": "#646464", "GOAL": "#00ff00", "LAVA": "#ff8000"}
"""Objects drawn as a whole cell of one colour."""

def grid_fields(schema: ObsSchema) -> list[Field]:
    """The schema's categorical grid fields (the ones the report draws)."""
    return [f for f in schema.fields if f.kind == "categorical" and f.shape]


def _minigrid_cell(x: int, y: int, obj: int, col: int, state: int) -> str:
    """One cell of a minigrid view: SVG shapes at pixel (x, y)."""
    c = RGB.get(_COL.get(col, ""), "#888888")
    name = _OBJ.get(obj, "?")
    m, h = 2, CELL // 2
    cx, cy = x + h, y + h
    if name in _FILLED:
        return f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="{_FILLED[name]}"/>'
    if name == "FLOOR":
        return f'<rect x="{x + 1}" y="{y + 1}" width="{CELL - 2}" height="{CELL - 2}" fill="{c}" opacity="0.4"/>'
    if name == "BALL":
        return f'<circle cx="{cx}" cy="{cy}" r="{h - m}" fill="{c}"/>'
    if name == "KEY":
        return (f'<circle cx="{cx}" cy="{y + 6}" r="4" fill="none" stroke="{c}" stroke-width="2"/>'
                f'<line x1="{cx}" y1="{y + 10}" x2="{cx}" y2="{y + CELL - 2}" stroke="{c}" stroke-width="2"/>')
    if name == "BOX":
        return (f'<rect x="{x + m}" y="{y + m}" width="{CELL - 2 * m}" height="{CELL - 2 * m}" fill="none" '
                f'stroke="{c}" stroke-width="2"/>')
    if name == "DOOR":
        state_name = _STATE.get(state, "?")
        if state_name == "OPEN":
            return (f'<rect x="{x + 1}" y="{y + 1}" width="{CELL - 2}" height="{CELL - 2}" fill="none" '
                    f'stroke="{c}" stroke-width="1" stroke-dasharray="3 2"/>')
        door = (f'<rect x="{x + 1}" y="{y + 1}" width="{CELL - 2}" height="{CELL - 2}" fill="{c}" '
                f'opacity="0.55" stroke="{c}" stroke-width="2"/>')
        if state_name == "LOCKED":
            door += (f'<text x="{cx}" y="{cy + 4}" font-size="10" text-anchor="middle" '
                     f'fill="black">L</text>')
        return door
    if name in ("EMPTY", "AGENT"):
        return ""
    return f'<text x="{cx}" y="{cy + 4}" font-size="9" text-anchor="middle" fill="white">{obj}</text>'


def _agent(x: int, y: int) -> str:
    """The observer: a red triangle facing up (row 0)."""
    return (f'<polygon points="{x + CELL // 2},{y + 3} {x + CELL - 3},{y + CELL - 3} {x + 3},{y + CELL - 3}" '
            f'fill="#ff0000" stroke="white" stroke-width="1" opacity="0.9"/>')


def grid_svg(field: Field, grid: Any) -> str:
    """An inline SVG of one grid value (the nested list `Example.state[field.name]`)."""
    rows = [[list(c) if isinstance(c, (list, tuple)) else [c] for c in col] for col in grid]
    w, h = len(rows), len(rows[0]) if rows else 0
    minigrid = len(field.shape) == 3 and field.shape[2] == 3
    parts = [f'<svg width="{w * CELL}" height="{h * CELL}" '
             f'viewBox="0 0 {w * CELL} {h * CELL}" role="img" aria-label="{escape(field.name)} grid">',
             f'<rect width="{w * CELL}" height="{h * CELL}" fill="black"/>']
    for i in range(w):
        for j in range(h):
            x, y, cell = i * CELL, j * CELL, [int(v) for v in rows[i][j]]
            if minigrid:
                parts.append(_minigrid_cell(x, y, *cell[:3]))
            else:
                parts.append(f'<text x="{x + CELL // 2}" y="{y + CELL // 2 + 4}" font-size="9" '
                             f'text-anchor="middle" fill="white">{cell[0]}</text>')
            parts.append(f'<rect x="{x}" y="{y}" width="{CELL}" height="{CELL}" fill="none" '
                         f'stroke="#555" stroke-width="0.5"/>')
    if field.focus and len(field.focus) == 2:
        parts.append(_agent(field.focus[0] * CELL, field.focus[1] * CELL))
    parts.append("</svg>")
    return "".join(parts)


def mission_text(state: dict[str, Any]) -> str:
    """A BabyAI mission from its fields ('go to the red ball'); '' without mission fields."""
    if not all(k in state for k in MISSION):
        return ""

    def obj(kind: Any, colour: Any) -> str:
        words = [] if int(colour) < 0 else [_COL.get(int(colour), "?").lower()]
        words.append("object" if int(kind) < 0 else _OBJ.get(int(kind), "?").lower())
        return "the " + " ".join(words)

    verb = _VERB.get(int(state["m_verb"]), "?")
    loc = _LOC.get(int(state["m_loc"]), "")
    text = f"{verb} {obj(state['m_type'], state['m_color'])}" + ("" if loc in ("none", "") else f" ({loc})")
    if int(state["m2_type"]) >= 0:
        text += f", then {obj(state['m2_type'], state['m2_color'])}"
    return text


def worst_section(schema: ObsSchema, worst: list[dict[str, Any]]) -> dict[str, Any]:
    """The report's rows for the best program's worst-scored examples: label, reward, its
    scalar state values, and the grid pictures (SVG markup) when the schema has grid fields."""
    from markupsafe import Markup

    grids = grid_fields(schema)
    rows = []
    for w in worst:
        state = dict(w.get("state") or {})
        scalars = [(k, v) for k, v in state.items()
                   if not isinstance(v, list) and k not in {g.name for g in grids}]
        rows.append({
            "label": w.get("label", "?"), "source": w.get("source", "?"),
            "episode": w.get("episode", -1), "step": w.get("step", -1),
            "reward": f"{float(w.get('reward', float('nan'))):.4g}",
            "pictures": [Markup(grid_svg(g, state[g.name])) for g in grids if g.name in state],
            "mission": mission_text(state),
            "state": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in scalars),
        })
    return {"examples": rows, "grid": bool(grids)}
