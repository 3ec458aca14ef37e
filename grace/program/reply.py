"""Finding the reward program in free text (LLM replies): fences, prose, reasoning blocks."""

from __future__ import annotations

import re

from grace.program.core import RewardProgram
from grace.program.parse import SOURCE_LIMIT_BYTES, ProgramError, parse_source

# -- extraction from free text (LLM replies) ----------------------------------------------------
_THINK = re.compile(r"<(think|thinking|reasoning|reflection)>.*?</\1>", re.S | re.I)
_UNOPENED = re.compile(r"^.*?</(think|thinking|reasoning|reflection)>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_START = re.compile(r'^(\"\"\"|\'\'\'|PARAMS\s*=|def |import |from |[A-Za-z_]\w*\s*=)')


def strip_reasoning(text: str) -> str:
    """Drop <think>...</think>-style reasoning blocks, and everything before an unopened closing
    tag (models that start thinking without the opening tag) unless that would drop the code."""
    text = _THINK.sub("", text or "")
    rest = _UNOPENED.sub("", text, count=1)
    return rest if rest != text and ("def reward" in rest or "def reward" not in text) else text


def extract_program(text: str) -> RewardProgram:
    """Find the reward program in a reply: fenced or not, with reasoning and prose around it."""
    text = strip_reasoning(text)
    candidates = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    candidates = [c for c in candidates if "def reward" in c]
    if not candidates and "def reward" in text:
        candidates = [_unfenced(text)]
    for body in reversed(candidates):
        source = _trim_to_parse(body)
        if source and "def reward" in source:
            return RewardProgram(source.strip() + "\n")
    if candidates:
        _ = RewardProgram(candidates[-1]).tree  # raises the syntax error with its line
    raise ProgramError("no reward program found in the reply (expected a `def reward(s, a, s_next, p)`)")


def _unfenced(text: str) -> str:
    lines = text.splitlines()
    reward_at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("def reward"))
    start = reward_at
    while start > 0 and (
        _START.match(lines[start - 1]) or lines[start - 1].startswith((" ", "\t", "#", "}", ")", "]")) or not lines[start - 1].strip()
    ):
        start -= 1
    return "\n".join(lines[start:])


def _trim_to_parse(body: str) -> str | None:
    if len(body) > SOURCE_LIMIT_BYTES:
        return None
    lines = body.rstrip().splitlines()
    while lines:
        src = "\n".join(lines)
        try:
            parse_source(src)
            return src
        except ProgramError as exc:
            if exc.kind != "syntax" or not exc.reason.startswith("syntax error"):
                return src  # parses, but breaks a limit: let validation say so
            lines.pop()
    return None
