"""The report draws a grid task's worst-scored examples (BabyAI: the egocentric 7x7 view) and
leaves non-grid tasks without pictures."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from grace.config import EvolveConfig
from grace.data.trajectories import load_demos
from grace.program import RewardProgram
from grace.report import build_context, render
from grace.report_grid import grid_svg, mission_text, worst_section
from grace.search.archive import Archive
from grace.tasks import get_task
from grace.tasks.babyai.encoding import COLORS, OBJECTS, SCHEMA

sys.path.insert(0, str(Path(__file__).parent))
from test_report import _parse, make_run  # noqa: E402

LEVEL = "BabyAI-GoToRedBall-v0"
ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "grace" / "tasks" / "rewards" / "babyai_gotoredball.py").read_text()


def _examples() -> list[dict]:
    """Worst examples from the committed demos: each episode's first state (as a negative
    scoring high would be shown) and last state (an expert state)."""
    task = get_task(LEVEL)
    demos = load_demos(str(ROOT / "demos" / f"{LEVEL}.npz"), task)
    out = []
    for k, ep in zip(range(2), demos.episodes(), strict=False):
        obs = ep.obs
        out.append({"label": "expert", "source": "expert", "reward": 0.1 * k, "episode": k,
                    "step": len(obs) - 2, "state": SCHEMA.state_dict(obs[-1]), "components": {}})
        out.append({"label": "negative", "source": "random", "reward": 0.9, "episode": k, "step": 0,
                    "state": SCHEMA.state_dict(obs[0]), "components": {}})
    return out


def _babyai_run(tmp: Path) -> Path:
    run = tmp / LEVEL  # named after its task, as benchmarks/babyai.py names runs: still the built-in task
    run.mkdir()
    EvolveConfig(task=LEVEL, demos=str(ROOT / "demos" / f"{LEVEL}.npz"), out=str(run)).override(
        search={"generations": 1, "population": 1, "islands": 1}).save(run / "config.toml")
    ar = Archive(run / "archive.sqlite")
    prog = RewardProgram(REFERENCE)
    row = ar.add_proposal(program_id=prog.program_id, round=0, generation=0, slot=0, island=0,
                          operator="init", parents=[], proposer="offline", source=REFERENCE, meta={})
    ar.set_result(row, status="ok", fitness=0.5, heldout=0.4, score=0.5, metrics={}, negatives_version=0,
                  size=prog.size, worst=_examples())
    ar.set_population(0, 0, {0: [row]})
    ar.complete_generation(0, 0, best_program=row, best_fitness=0.5, best_heldout=0.4, evaluated=1,
                           errors=0, seconds=0.1)
    ar.close()
    return run


def test_babyai_report_draws_the_worst_views(tmp_path: Path) -> None:
    run = _babyai_run(tmp_path)
    ctx = build_context(run)
    assert "error" not in ctx["worst"], ctx["worst"]
    assert ctx["worst"]["grid"] and len(ctx["worst"]["examples"]) == 4
    html = render(ctx)
    section = html.split('id="worst"')[1].split("</section>")[0]
    assert section.count("<svg") == 4 and 'class="section-error"' not in section
    assert "go to the red ball" in section
    assert "#ff0000" in section  # the red ball (or the agent) drawn in minigrid's red
    page = _parse(html)
    assert not [u for u in page.urls if re.match(r"\s*(https?:)?//", u)] and page.scripts == 0


def test_classic_control_report_has_no_grid_pictures(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    ar = Archive(run / "archive.sqlite")
    best = ar.top(1)[0]
    ar.set_result(best.id, worst=[{"label": "negative", "source": "random", "reward": 2.0, "episode": 1,
                                   "step": 3, "state": {"pole_angle": 0.3}, "components": {}}])
    ar.close()
    ctx = build_context(run)
    assert not ctx["worst"]["grid"] and ctx["worst"]["examples"][0]["pictures"] == []
    html = render(ctx)
    assert "<svg" not in html and "pole_angle=0.3" in html.split('id="worst"')[1]


def test_grid_svg_draws_objects_and_the_agent() -> None:
    image = np.full((7, 7, 3), 0, dtype=int)
    image[..., 0] = OBJECTS["EMPTY"]
    image[3, 5] = (OBJECTS["BALL"], COLORS["PURPLE"], 0)
    image[0, :, 0] = OBJECTS["WALL"]
    field = SCHEMA.fields[0]
    svg = grid_svg(field, image.tolist())
    assert svg.count("<circle") == 1 and "#7027c3" in svg  # one ball, minigrid's purple
    assert "<polygon" in svg  # the agent
    assert svg.count('fill="#646464"') == 7  # the wall column
    state = {"m_verb": 3.0, "m_type": 5.0, "m_color": 4.0, "m_loc": 0.0, "m2_type": 7.0, "m2_color": -1.0}
    assert mission_text(state) == "put next the yellow key, then the box"
    assert worst_section(SCHEMA, [])["grid"] is True


@pytest.mark.parametrize("bad", [{}, {"m_verb": 0.0}])
def test_mission_text_needs_every_mission_field(bad: dict) -> None:
    assert mission_text(bad) == ""
