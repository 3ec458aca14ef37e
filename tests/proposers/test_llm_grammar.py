"""The reward contract's grammar: every sentence it allows is a program the contract validator
accepts (and the sandbox compiles), for scalar-only and vector-field schemas."""

from __future__ import annotations

import random

import numpy as np
import pytest

from grace.program import extract_program
from grace.proposers.llm.grammar import gbnf, param_keys, program_grammar, program_rules, sample
from grace.proposers.llm.prompts import xp_names
from grace.tasks import get_task
from grace.tasks.spec import Field, ObsSchema


@pytest.mark.parametrize("schema", [
    get_task("cartpole").schema,
    get_task("hopper").schema,
    ObsSchema((Field("fingertip", 2), Field("target", 2), Field("speed"))),
], ids=["cartpole", "hopper", "vector-fields"])
def test_every_grammar_sentence_passes_the_validator(schema: ObsSchema) -> None:
    rules = program_rules(schema, xp_names())
    rng = random.Random(0)
    for _ in range(300):
        text = sample(rules, rng)
        program = extract_program(text).validate(schema)
        assert set(program.params) == set(param_keys(schema))


def test_grammar_sentences_compile_and_score_a_batch() -> None:
    from grace.sandbox.compile import compile_reward

    schema = ObsSchema((Field("fingertip", 2), Field("target", 2), Field("speed")))
    rules = program_rules(schema, xp_names())
    rng = random.Random(1)
    obs = np.random.default_rng(0).normal(size=(5, schema.width)).astype(np.float32)
    vector_seen = 0
    for _ in range(60):
        program = extract_program(sample(rules, rng))
        vector_seen += "axis=-1" in program.source
        fn = compile_reward(program.source, schema)
        with np.errstate(all="ignore"):
            total, _ = fn.raw_call(obs, np.zeros(5), obs)
        total = np.broadcast_to(np.asarray(total, dtype=float), (5,))  # one float per transition
        assert total.shape == (5,)
    assert vector_seen > 0


def test_gbnf_text() -> None:
    text = program_grammar(get_task("cartpole").schema, xp_names())
    assert text.startswith('root ::= "```python\\n" doc')
    assert "atom2 ::= number | " in text and "expr3" not in text  # nesting is bounded
    assert '"pole_angle"' in text and "xp.abs(" in text and "xp.linalg.norm" not in text
    assert all(" ::= " in line for line in text.strip().splitlines())
    # a function the policy does not allow never appears
    assert "xp.tanh(" not in gbnf(program_rules(get_task("cartpole").schema, ["abs", "exp"]))
