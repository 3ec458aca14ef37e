"""Labelling replies (GRACE step 1): the numbered states an LLM picks, on expert episodes' end states
(`label_goals`, `GOALS: [...]`) and on a trained policy's states (`label_policy`, `EXPERT: [...]`)."""

from __future__ import annotations

import re
from collections.abc import Callable

from grace.program import strip_reasoning
from grace.proposers.llm.context import Messages

REPAIR_GOALS = "End your reply with one line `GOALS: [i, j, ...]` listing the numbers of the states that solve the task."
REPAIR_POLICY = ("End your reply with one line `EXPERT: [i, j, ...]` listing the numbers of the states that look "
                 "like the expert solving the task.")
PREVIOUS = (8000, 3000, 1200, 400)
"""Characters of the previous reply a repair request resends, per shrink level."""


def parse_indices(text: str, n: int, tag: str) -> list[int] | None:
    """Indices in [0, n) from a labelling reply (`TAG: [..]`, else the last list of numbers); None if none."""
    text = strip_reasoning(text)
    found = re.findall(rf"{tag}\s*[:=]\s*\[([^\]]*)\]", text, flags=re.I)
    if not found:
        found = re.findall(r"\[([\d\s,]*)\]", text)
    if not found:
        return None
    nums = [int(x) for x in re.findall(r"-?\d+", found[-1])]
    return sorted({i for i in nums if 0 <= i < n})


def parse_goal_indices(text: str, n: int) -> list[int] | None:
    """Indices in [0, n) from a label_goals reply (`GOALS: [..]`, else the last [..] list); None if none."""
    return parse_indices(text, n, "GOALS")


def parse_policy_indices(text: str, n: int) -> list[int] | None:
    """Indices in [0, n) from a label_policy reply (`EXPERT: [..]`, else the last [..] list); None if none."""
    return parse_indices(text, n, "EXPERT")


def repair(messages: Messages, reply: str, ask: str) -> Callable[[int], Messages]:
    """The follow-up request for an unparsed labelling reply, per shrink level."""
    previous = strip_reasoning(reply)
    return lambda level: [*messages, {"role": "assistant", "content": previous[:PREVIOUS[level]]},
                          {"role": "user", "content": ask}]
