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


CHAINED = '''"""Reward: up near c, still near 0, a gated blend."""

PARAMS = {"w": 2.0, "c": 0.1, "k": 0.5, "t": 0.3, "terminal": 1.5}


def reward(s, a, s_next, p):
    """An inner docstring stays."""
    up = -p["w"] * xp.abs(s_next.pole_angle - p["c"])
    still = -xp.abs(s_next.cart_velocity)
    blend = p["k"] * up * (s_next.cart_position > p["t"])
    return up + still + blend, {"up": up, "still": still, "blend": blend}
'''


def test_keep_term_pays_the_same_term_with_only_the_lines_and_params_it_reads() -> None:
    from grace.program import keep_term

    schema = get_task("cartpole").schema
    obs = np.array([[0.5, 0.5, 0.3, 0.0], [0.1, -2.0, -0.1, 1.0]])
    whole = CompiledReward(CHAINED, schema)(obs, np.zeros(2), obs, RewardProgram(CHAINED).params)
    for name, lines, keys in (("up", ["up ="], {"w", "c"}), ("still", ["still ="], set()),
                              ("blend", ["up =", "blend ="], {"w", "c", "k", "t"})):
        keys = keys | {"terminal"}  # a key no line reads (the contract's terminal value) stays
        src = keep_term(CHAINED, name, schema)
        prog = RewardProgram(src)
        total, comps = CompiledReward(src, schema)(obs, np.zeros(2), obs, prog.params)
        assert np.allclose(total, whole[1][name]) and list(comps) == [name]
        body = [ln.strip() for ln in src.split("def reward")[1].splitlines() if " = " in ln]
        assert [ln.split(" = ")[0] + " =" for ln in body] == lines  # the lines it reads, in order
        assert set(prog.params) == keys  # the PARAMS only dropped lines read are dropped
        assert prog.params["terminal"] == 1.5 and "An inner docstring stays." in src
        assert prog.docstring.startswith(f"Reward: {name}, one term of the reward up near c, still near 0")


@pytest.mark.parametrize("source, message", [
    (SOURCE.replace('return up + still, {"up": up, "still": still}', 'return up, {"up": up}'), "one term"),
    (SOURCE.replace("    still = -xp.abs", "    if s_next.cart_velocity > 0:\n        up = up * 2\n    still = -xp.abs"),
     "plain `name = expression`"),
])
def test_keep_term_refuses_what_it_cannot_take_apart_in_one_line(source: str, message: str) -> None:
    from grace.program import keep_term

    with pytest.raises(ProgramError, match="^[^\n]*" + message.replace("`", ".")):
        keep_term(source, "up")
    with pytest.raises(ProgramError, match="no term 'nope'"):
        keep_term(SOURCE, "nope")
