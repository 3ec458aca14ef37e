"""Honest LLM budgets and cost accounting: a call is counted when it is sent, never after.

`CallLedger.admit()` runs right before a request leaves for the server (inside the transport's
concurrency slot): it raises `BudgetExhausted` when one more call would exceed `llm.max_calls`,
else counts the call. So concurrent requests can never overshoot the call budget. Replies and
failed attempts are counted apart (`replies`, `failed`, `errors` by kind), with tokens and time.
The token budget is checked at admission against the tokens already spent: requests in flight
may still add their own (at most concurrency x (prompt + max_tokens)).
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from grace.proposers.base import BudgetExhausted

ERROR_KINDS = ("timeout", "context", "rate_limit", "server", "connection", "refused", "bad_request",
               "no_choices", "cancelled", "other")


def error_kind(error: str | None) -> str:
    """The kind of a recorded call error (its text starts with the exception's class name)."""
    text = error or ""
    if "Timeout" in text:
        return "timeout"
    if "context_length_exceeded" in text or re.search(r"context (length|window|size)", text, re.I):
        return "context"
    if "no choices" in text:
        return "no_choices"
    if text.startswith("Cancelled"):
        return "cancelled"
    status = re.match(r"\w+ (\d{3})\b", text)
    code = int(status.group(1)) if status else None
    if code == 429:
        return "rate_limit"
    if code is not None and code >= 500:
        return "server"
    if code in (401, 403, 404):
        return "refused"
    if code is not None and code >= 400:
        return "bad_request"
    if "Connection" in text:
        return "connection"
    return "other"


@dataclass
class CallLedger:
    """Counters of one proposer (this run, across resumes) and the budget checks."""

    max_calls: int = 0
    max_tokens_total: int = 0
    calls: int = 0
    """Requests sent to a model (failed attempts included; cache hits excluded)."""
    replies: int = 0
    """Requests that came back with a reply."""
    failed: int = 0
    """Requests that failed (timeout, HTTP error, connection error, no choices)."""
    cached: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    """Summed latency of the calls sent."""
    errors: Counter[str] = field(default_factory=Counter)
    """Failed attempts by kind (`error_kind`)."""

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def check(self) -> None:
        """Raise BudgetExhausted if another call would exceed max_calls or max_tokens_total."""
        if self.max_calls and self.calls >= self.max_calls:
            flight = self.calls - self.replies - self.failed
            raise BudgetExhausted(f"LLM call budget reached ({self.calls} of max_calls={self.max_calls}: "
                                  f"{self.replies} replies, {self.failed} failed attempts"
                                  f"{f', {flight} in flight' if flight > 0 else ''})")
        if self.max_tokens_total and self.tokens >= self.max_tokens_total:
            raise BudgetExhausted(f"LLM token budget reached ({self.tokens} of max_tokens_total="
                                  f"{self.max_tokens_total})")

    def admit(self) -> None:
        """A request is about to be sent: check the budgets, then count it."""
        self.check()
        self.calls += 1

    def settle(self, *, error: str | None, prompt_tokens: int = 0, completion_tokens: int = 0,
               latency: float = 0.0) -> None:
        """The outcome of an admitted request."""
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.seconds += latency
        if error:
            self.failed += 1
            self.errors[error_kind(error)] += 1
        else:
            self.replies += 1

    def resume(self, rows: list[dict[str, Any]]) -> None:
        """Count what a resumed run's archive already spent (rows of `call_stats`)."""
        for row in rows:
            sent = int(row["calls"] or 0) - int(row["cached"] or 0)
            errors = int(row["errors"] or 0)
            self.calls += sent
            self.failed += errors
            self.replies += max(0, sent - errors)
            self.prompt_tokens += int(row["prompt_tokens"] or 0)
            self.completion_tokens += int(row["completion_tokens"] or 0)

    def summary(self) -> dict[str, Any]:
        """calls, replies, failed, cached, errors by kind, tokens, seconds."""
        return {"calls": self.calls, "replies": self.replies, "failed": self.failed, "cached": self.cached,
                "errors": dict(self.errors), "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens, "seconds": round(self.seconds, 3)}


def call_summary(rows: list[dict[str, Any]], errors: list[tuple[str, int]]) -> str:
    """One line from a run's recorded calls (`Archive.call_stats`, `Archive.call_errors`): calls
    sent, replies, failed attempts by kind, cached, tokens, seconds."""
    sent = sum(int(r["calls"]) - int(r["cached"] or 0) for r in rows)
    failed = sum(int(r["errors"] or 0) for r in rows)
    kinds: Counter[str] = Counter()
    for error, n in errors:
        kinds[error_kind(error)] += n
    tokens = sum(int(r["prompt_tokens"]) + int(r["completion_tokens"]) for r in rows)
    seconds = sum(float(r["latency"]) * int(r["calls"]) for r in rows)  # latency: the mean over all rows
    by_kind = ", ".join(f"{k} {n}" for k, n in kinds.most_common())
    cached = sum(int(r["cached"] or 0) for r in rows)
    return (f"LLM calls: {sent} sent, {sent - failed} replies, {failed} failed{f' ({by_kind})' if by_kind else ''}, "
            f"{cached} cached; {tokens} tokens; {seconds:.1f} s")
