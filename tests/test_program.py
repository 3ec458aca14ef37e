from __future__ import annotations

import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grace.program import ProgramError, RewardProgram, extract_program, format_params
from grace.tasks import get_task

GOOD = textwrap.dedent('''
    """CartPole: upright."""

    PARAMS = {"limit": 0.21, "w": 0.5}


    def reward(s, a, s_next, p):
        upright = 1.0 - xp.abs(s_next.pole_angle) / p["limit"]
        return upright - p["w"] * xp.abs(s_next.cart_position), {"upright": upright}
''').lstrip()
SCHEMA = get_task("cartpole").schema


def test_parse_and_validate():
    p = RewardProgram(GOOD).validate(SCHEMA)
    assert p.params == {"limit": 0.21, "w": 0.5}
    assert p.docstring == "CartPole: upright."
    assert p.size > 10


@pytest.mark.parametrize(("source", "message"), [
    ("x = 1\n", "no `def reward"),
    ("def reward(s, a, p):\n    return 1\n", r"exactly 4 arguments .*\(s, a, p\)"),
    ("def reward(s, a, s_next, p):\n    return s_next.pole_angel\n", r"line 2: unknown observation field s_next.pole_angel; fields are: cart_position"),
    ('PARAMS = {"k": "x"}\ndef reward(s, a, s_next, p):\n    return 1\n', r"line 1: PARAMS\['k'\] = 'x' is not a number"),
    ("PARAMS = [1]\ndef reward(s, a, s_next, p):\n    return 1\n", "PARAMS must be a dict"),
    ("import os\ndef reward(s, a, s_next, p):\n    return 1\n", "line 1: import statements are not allowed"),
    ("def reward(s, a, s_next, p):\n    return p['k']\n", r"p\['k'\] is used but PARAMS has no such key"),
    ("def reward(s, a, s_next, p)\n    return 1\n", "line 1: syntax error"),
    ("def reward(s, a, s_next, p):\n    return 1\ndef debug(s):\n    return ''\n", "`debug` must take exactly 4"),
    ('"""doc"""; x = 1\ndef reward(s, a, s_next, p):\n    return 1\n', "line 1: the docstring must stand on lines of its own"),
    ('PARAMS = {"w": 1.0}; x = 1\ndef reward(s, a, s_next, p):\n    return 1\n', "line 1: PARAMS must stand on lines of its own"),
    ("for i in []:\n    pass\ndef reward(s, a, s_next, p):\n    return 1\n", "line 1: module-level For statements are not allowed"),
    ("@w\ndef reward(s, a, s_next, p):\n    return 1\n", "line 2: decorators are not allowed"),
    ('PARAMS = {"w": 1.0, "w": 2.0}\ndef reward(s, a, s_next, p):\n    return 1\n', "line 1: PARAMS key 'w' appears twice"),
    ('PARAMS = {"w": -1e13}\ndef reward(s, a, s_next, p):\n    return 1\n', r"line 1: PARAMS\['w'\] is out of range"),
    ('PARAMS = {**D}\ndef reward(s, a, s_next, p):\n    return 1\n', r"line 1: PARAMS cannot unpack"),
    ('LIMIT = 2 * 0.5\nNAMES = ("a", "b")\nPARAMS = {"w": -1.0}\ndef reward(s, a, s_next, p):\n    return x\n', None),
])
def test_validation_messages(source, message):
    if message is None:  # constants and a negative PARAMS value are part of the contract
        assert RewardProgram(source).validate(SCHEMA).params == {"w": -1.0}
        return
    with pytest.raises(ProgramError, match=message):
        RewardProgram(source).validate(SCHEMA)


def test_identity_ignores_docstring_comments_and_param_values():
    a = RewardProgram(GOOD)
    b = RewardProgram(GOOD.replace("CartPole: upright.", "Other words").replace("0.21", "0.3").replace("\n\n\ndef", "\n# a comment\n\ndef"))
    c = RewardProgram(GOOD.replace("- p[\"w\"]", "+ p[\"w\"]"))
    assert a.program_id == b.program_id
    assert a.program_id != c.program_id


NESTED = textwrap.dedent('''
    """Module doc."""

    PARAMS = {"terminal": -1.0}


    def reward(s, a, s_next, p):
        """Reward doc."""
        def inner(x):
            """Inner doc."""
            return x
        if s_next.pole_angle.shape:
            try:
                y = inner(s_next.pole_angle)
            except ValueError:
                """A string statement in a handler: not a docstring."""
                y = 0.0
        return y
''').lstrip()


@pytest.mark.parametrize("source", [GOOD, NESTED])
def test_logic_equals_a_stripped_deep_copy_and_leaves_the_shared_tree_alone(source):
    """The logic dump is built without copying the parsed tree: the same dump as stripping a
    deep copy (the former way, so program ids do not change), the cached tree untouched."""
    import ast
    import copy

    from grace.program.contract import assigns_params
    from grace.program.text import is_string_expr

    def strip_docstrings(tree):  # the former way: strip a deep copy in place
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                if node.body and is_string_expr(node.body[0]):
                    node.body = node.body[1:] or [ast.Pass()]
        return tree

    prog = RewardProgram(source)
    before = ast.dump(prog.tree, include_attributes=True)
    ref = strip_docstrings(copy.deepcopy(prog.tree))
    for stmt in list(ref.body):
        if isinstance(stmt, ast.Assign) and assigns_params(stmt):
            keys = sorted(k for k in prog.params if k not in ("terminal", "floor"))
            if keys:
                stmt.value = ast.Dict(keys=[ast.Constant(k) for k in keys], values=[ast.Constant(0) for _ in keys])
            else:
                ref.body.remove(stmt)
    assert prog.normalised == ast.dump(ref, annotate_fields=False, include_attributes=False)
    assert prog.size == sum(1 for stmt in ref.body if not assigns_params(stmt) for _ in ast.walk(stmt))
    assert ast.dump(prog.tree, include_attributes=True) == before
    assert "Inner doc" not in prog.normalised and ("handler" in prog.normalised) == (source is NESTED)


@settings(max_examples=50, deadline=None)
@given(st.dictionaries(st.sampled_from(["limit", "w"]), st.floats(-1e5, 1e5, allow_nan=False), min_size=2))
def test_with_params_round_trip(values):
    p = RewardProgram(GOOD).with_params(values)
    assert p.program_id == RewardProgram(GOOD).program_id
    for k, v in values.items():
        assert p.params[k] == pytest.approx(v, rel=1e-3, abs=1e-9)
    p.validate(SCHEMA)


def test_with_params_inserts_when_missing():
    src = "def reward(s, a, s_next, p):\n    return p['k'] * s_next.pole_angle\n"
    p = RewardProgram(src).with_params({"k": 2.0})
    assert p.params == {"k": 2.0}
    p.validate(SCHEMA)


def test_long_params_wrap():
    text = format_params({f"weight_number_{i}": float(i) for i in range(8)})
    assert text.startswith("PARAMS = {\n") and text.count("\n") == 9


def test_provenance_round_trip():
    p = RewardProgram(GOOD).with_provenance({"task": "cartpole", "fitness": "0.9"})
    assert p.provenance == {"task": "cartpole", "fitness": "0.9"}
    assert p.summary == "CartPole: upright."
    assert p.program_id == RewardProgram(GOOD).program_id
    again = p.with_provenance({"task": "x"})
    assert again.provenance == {"task": "x"} and again.docstring.count("grace provenance") == 1


MESSY = [
    f"Sure! Here is the reward:\n```python\n{GOOD}```\nIt rewards being upright.",
    f"<think>I should write\n```python\ndef reward(s, a, s_next, p):\n    return 0\n```\nno wait</think>\n```py\n{GOOD}```",
    f"Here you go:\n\n{GOOD}\nThis should work well because the pole stays up.",
    f"```\n{GOOD}```",
    f"First a draft:\n```python\ndef helper():\n    pass\n```\nand the final:\n```python\n{GOOD}\n```",
    f"```python\n{GOOD}",  # unterminated fence
]


@pytest.mark.parametrize("text", MESSY)
def test_extract_program_from_messy_text(text):
    p = extract_program(text)
    assert p.program_id == RewardProgram(GOOD).program_id
    p.validate(SCHEMA)


@settings(max_examples=40, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`"), max_size=200),
       st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="`"), max_size=200))
def test_extract_survives_arbitrary_prose(before, after):
    p = extract_program(f"{before}\n```python\n{GOOD}```\n{after}")
    assert p.program_id == RewardProgram(GOOD).program_id


def test_extract_without_code():
    with pytest.raises(ProgramError, match="no reward program found"):
        extract_program("I cannot help with that.")


def test_the_per_source_caches_hold_a_bounded_amount_of_text():
    from grace.program.parse import SourceCache

    cache = SourceCache(limit=10)
    cache.put(("aaaa",), (1,))
    cache.put(("bbbb", None), (2,))
    cache.put(("bbbb", None), (3,))  # the same key again: counted once
    assert cache.held == 8 and cache.get(("bbbb", None)) == (3,)
    cache.put(("cccc",), (4,))  # over 10: the oldest goes
    assert cache.get(("aaaa",)) is None and cache.get(("cccc",)) == (4,) and cache.held == 8
    cache.put(("x" * 11,), (5,))  # longer than the limit: not kept, nothing evicted for it
    assert cache.get(("x" * 11,)) is None and cache.held == 8


def test_a_cached_validation_verdict_raises_like_the_first():
    bad = GOOD.replace('p["w"]', 'p["missing"]')
    for _ in range(2):
        with pytest.raises(ProgramError, match="missing"):
            RewardProgram(bad).validate(SCHEMA)
    assert RewardProgram(GOOD).validate(SCHEMA).validate(SCHEMA).source == GOOD


def test_the_fitted_terminal_value_and_floor_are_not_part_of_a_programs_identity():
    base = RewardProgram(GOOD)
    fitted = base.with_params(base.params | {"terminal": -12.5, "floor": -0.25})
    assert fitted.program_id == base.program_id and fitted.size == base.size
    assert fitted.params["floor"] == -0.25
