"""The offline operator on grid observations: generic cell terms and the schema's derived
scalars, no per-level templates; programs it writes round-trip and run in the sandbox."""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path

import numpy as np
import pytest

from grace.program import RewardProgram
from grace.proposers.offline.features import state_features
from grace.proposers.offline.operator import OfflineProposer
from grace.proposers.offline.terms import Feature, Term, parse_feature, parse_program, render
from grace.sandbox.compile import compile_reward
from grace.tasks import get_task
from grace.tasks.babyai.encoding import SCHEMA

DEMOS = Path(__file__).resolve().parents[2] / "demos"
TASK = get_task("BabyAI-GoToRedBall-v0")


def test_grid_features_are_cells_near_the_focus_and_the_derived_scalars() -> None:
    feats = state_features(SCHEMA)
    cells = [f for f in feats if f.kind == "cell"]
    assert Feature("cell", ("image", 3, 5, 0)) in cells and Feature("cell", ("image", 3, 6, 0)) in cells
    assert all(abs(f.args[1] - 3) + abs(f.args[2] - 6) <= 2 for f in cells)
    assert len(cells) == 9 * 3
    assert {Feature("field", (d.name,)) for d in SCHEMA.derived} <= set(feats)
    assert not [f for f in feats if f.kind in ("norm", "vsum")]  # a grid is not a vector
    assert not [f for f in state_features(get_task("cartpole").schema) if f.kind == "cell"]


def test_cell_and_derived_terms_round_trip_and_run() -> None:
    terms = [Term("gauss", Feature("cell", ("image", 3, 5, 0)), {"w": 1.0, "c": 6.0, "s": 0.5}),
             Term("above", Feature("field", ("front_is_target",)), {"w": 0.5, "t": 0.5},
                  (Feature("field", ("carrying_type",)), "<", 1.5))]
    program = RewardProgram(render(terms)).validate(SCHEMA)
    back = parse_program(program, SCHEMA, TASK.action)
    assert back is not None and [t.key for t in back] == [t.key for t in terms]
    obs = np.zeros((3, 155), np.float32)
    obs[:, 78] = [6, 5, 6]
    obs[:, 149] = 6
    obs[:, 150] = -1
    obs[:, 81] = 1
    r, comps = compile_reward(program.source, SCHEMA)(obs, np.zeros(3, np.int64), obs)
    np.testing.assert_allclose(comps["image_3_5_0"], [1.0, np.exp(-4.0), 1.0], rtol=1e-6)
    data = {"image": obs[:, :147].reshape(3, 7, 7, 3), **SCHEMA.derived_values(obs)}
    np.testing.assert_allclose(sum(t.values(data) for t in back), r, rtol=1e-6)


@pytest.mark.parametrize("code", ["s_next.image[..., 7, 5, 0]", "s_next.image[..., 3, 5]",
                                  "s_next.direction[..., 3, 5, 0]"])
def test_malformed_cells_are_not_parsed(code: str) -> None:
    assert parse_feature(ast.parse(code, mode="eval").body, SCHEMA, TASK.action) is None


def test_init_finds_the_goal_from_generic_terms() -> None:
    pytest.importorskip("minigrid")
    from grace.config import EvolveConfig
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.search.negatives import RunInputs, task_context

    cfg = EvolveConfig()
    demos = load_demos(DEMOS / "BabyAI-GoToRedBall-v0.npz", TASK)
    data = RunInputs(TASK, demos, [("random", random_negatives(TASK, 16, 0))]).dataset(cfg.data, 0)
    props = asyncio.run(OfflineProposer().init(task_context(TASK, data), 8, 0))
    assert len(props) == 8 and props[0].meta["est_auc"] == 1.0
    used = {f for p in props for f in p.meta["fields"]}
    assert used & {"front_is_target", "target_dist", "front_type", "image_3_5_0", "image_3_5_1"}
    obs = data["s_next"][:32]
    for p in props:
        r, _ = compile_reward(p.source, SCHEMA)(obs, data["a"][:32], obs)
        assert np.all(np.isfinite(r))
    # the shaping step's potential search reads the same features (cells included)
    from grace.proposers.offline.potential import search_potential, with_potential
    from grace.search.negatives import shaping_trajectories

    pot = search_potential(shaping_trajectories(TASK, data), SCHEMA, 1.0)
    if pot is not None:
        shaped = with_potential(RewardProgram(props[0].source), pot).validate(SCHEMA)
        assert np.all(np.isfinite(compile_reward(shaped.source, SCHEMA).potential(obs)))


def test_llm_grammar_offers_derived_scalars_and_no_grid_norms() -> None:
    from grace.proposers.llm.grammar import Lit, program_rules
    from grace.sandbox.policy import load_policy

    rules = program_rules(SCHEMA, load_policy().xp_names | {"linalg.norm"})
    words = {alt[0].text for alt in rules["sfield"] if isinstance(alt[0], Lit)}
    assert {"front_is_target", "target_dist", "carrying_target", "step_frac"} <= words
    assert "vfield" not in rules  # `xp.linalg.norm(s.image, axis=-1)` would not be one value per state
