"""A reward's named terms one at a time (grace/program/terms.py): the rewrite pays exactly that term."""

from __future__ import annotations

import numpy as np
import pytest

from grace.program import ProgramError, RewardProgram, term_alone, term_names
from grace.sandbox.compile import CompiledReward
from grace.tasks import get_task

SOURCE = '''"""Two terms. A docstring line can read like code:
def reward(s, a, s_next, p):
"""

PARAMS = {"w": 2.0, "c": 0.1}


def reward(s, a, s_next, p):
    up = -p["w"] * xp.abs(s_next.pole_angle - p["c"])
    still = -xp.abs(s_next.cart_velocity)
    return up + still, {"up": up, "still": still}
'''


def test_each_term_alone_pays_that_term_with_the_same_params() -> None:
    schema = get_task("cartpole").schema
    assert term_names(SOURCE) == ["up", "still"]
    obs = np.array([[0.0, 0.5, 0.3, 0.0], [0.1, -2.0, -0.1, 1.0]])
    whole = CompiledReward(SOURCE, schema)(obs, np.zeros(2), obs, RewardProgram(SOURCE).params)
    for name in ("up", "still"):
        src = term_alone(SOURCE, name, schema)
        assert src.startswith(SOURCE.split("PARAMS")[0])  # the docstring's look-alike line untouched
        total, comps = CompiledReward(src, schema)(obs, np.zeros(2), obs, RewardProgram(src).params)
        assert np.allclose(total, whole[1][name]) and set(comps) == {"up", "still"}
        assert RewardProgram(src).params == RewardProgram(SOURCE).params


@pytest.mark.parametrize("source, message", [
    ("def reward(s, a, s_next, p):\n    return s_next.pole_angle\n", "no named terms"),
    ("def reward(s, a, s_next, p):\n    return 1.0, {}\n", "no named terms"),
    ("PARAMS = {}\n", "no reward function"),
])
def test_a_reward_without_named_terms_is_refused_in_one_line(source: str, message: str) -> None:
    with pytest.raises(ProgramError, match=message):
        term_names(source)


def test_an_unknown_term_or_a_clashing_name_is_refused() -> None:
    with pytest.raises(ProgramError, match="no term 'down'"):
        term_alone(SOURCE, "down")
    clash = SOURCE + "\n\ndef full_reward(x):\n    return x\n"
    with pytest.raises(ProgramError, match="already defines full_reward"):
        term_alone(clash, "up")
