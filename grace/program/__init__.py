"""Reward programs (see grace.program.core): THE contract validator, identity, PARAMS,
provenance, safe rewriting; host-side parsing limits; extraction from LLM replies."""

from grace.program.contract import COST_PREFIX, FITTED_KEYS, FLOOR_KEY, POTENTIAL, TERMINAL_KEY
from grace.program.core import RewardProgram, read_reward_file
from grace.program.parse import (
    MAX_AST_DEPTH,
    MAX_AST_NODES,
    MAX_STATEMENT_TOKENS,
    PARAM_ABS_MAX,
    SOURCE_LIMIT_BYTES,
    ProgramError,
    parse_source,
)
from grace.program.reply import extract_program, strip_reasoning
from grace.program.terms import keep_term, term_alone, term_names
from grace.program.text import (
    PROVENANCE_MARKER,
    format_params,
    parse_provenance,
    printable,
    string_literal,
)

__all__ = [
    "MAX_AST_DEPTH", "MAX_AST_NODES", "POTENTIAL", "MAX_STATEMENT_TOKENS", "PARAM_ABS_MAX", "PROVENANCE_MARKER",
    "COST_PREFIX", "FITTED_KEYS", "FLOOR_KEY", "SOURCE_LIMIT_BYTES", "TERMINAL_KEY", "ProgramError", "RewardProgram", "extract_program", "format_params", "parse_provenance",
    "parse_source", "printable", "read_reward_file", "strip_reasoning", "string_literal",
    "keep_term", "term_alone", "term_names",
]
