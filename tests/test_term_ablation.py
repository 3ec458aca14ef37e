"""benchmarks/term_ablation.py's rewrite: each term of a reward alone, validated, paying just that term."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.term_ablation import term_alone, term_names
from grace.program import RewardProgram
from grace.sandbox.compile import CompiledReward
from grace.tasks import get_task

SOURCE = '''"""Two terms."""

PARAMS = {"w": 2.0, "c": 0.1}


def reward(s, a, s_next, p):
    up = -p["w"] * xp.abs(s_next.pole_angle - p["c"])
    still = -xp.abs(s_next.cart_velocity)
    return up + still, {"up": up, "still": still}
'''


def test_each_term_alone_pays_that_term_with_the_same_params() -> None:
    task = get_task("cartpole")
    assert term_names(SOURCE) == ["up", "still"]
    obs = np.array([[0.0, 0.5, 0.3, 0.0], [0.1, -2.0, -0.1, 1.0]])
    whole = CompiledReward(SOURCE, task.schema)(obs, np.zeros(2), obs, RewardProgram(SOURCE).params)
    for name in ("up", "still"):
        src = term_alone(SOURCE, name)
        RewardProgram(src).validate(task.schema)
        total, comps = CompiledReward(src, task.schema)(obs, np.zeros(2), obs, RewardProgram(src).params)
        assert np.allclose(total, whole[1][name]) and set(comps) == {"up", "still"}


def test_a_reward_without_named_terms_is_refused() -> None:
    with pytest.raises(ValueError, match="no terms"):
        term_names("def reward(s, a, s_next, p):\n    return s_next.pole_angle\n")
