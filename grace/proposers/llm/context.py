"""Fitting requests into a server's context window.

A server's context length comes from `llm.context_length`, from the server itself (its model
listing or llama.cpp's /props, see `probe`), or from its first context error (a 400 whose message
names the limit: OpenAI, vLLM and llama-cpp-python say "maximum context length is N tokens",
llama.cpp gives `n_ctx`). Prompt tokens are estimated from characters, calibrated on the
prompt size a context error reports. `ContextBudget.fit` picks the first shrink level (fewer example
states, fewer worst examples, shorter debug output and previous reply) whose prompt leaves room for
the completion, and lowers `max_tokens` to that room when needed.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

Messages = list[dict[str, str]]

LEVELS = 4
"""Shrink levels: 0 is the full prompt, LEVELS - 1 the smallest."""
MIN_COMPLETION = 256
"""The fewest completion tokens worth asking for (a short program)."""
MARGIN = 32
"""Tokens kept free for the chat template's own text and estimation error."""
_PER_MESSAGE = 8

_LIMIT = (re.compile(r"maximum context length is (\d+)", re.I),
          re.compile(r"context window of (\d+)", re.I),
          re.compile(r"\bn_ctx\W{0,4}(\d+)", re.I),
          re.compile(r"context (?:length|size) (?:is |of )?(\d+)", re.I))
_PROMPT = (re.compile(r"(\d+) in the messages", re.I),
           re.compile(r"n_prompt_tokens\W{0,4}(\d+)", re.I),
           re.compile(r"Requested tokens \((\d+)\)", re.I))
_MARKERS = ("context_length_exceeded", "exceed_context_size", "maximum context length", "context window",
            "context size", "context length")


class ContextError(Exception):
    """The server refused a request because it does not fit its context window."""

    def __init__(self, message: str, limit: int | None = None, prompt_tokens: int | None = None,
                 sent: bool = True) -> None:
        super().__init__(message)
        self.limit = limit
        self.prompt_tokens = prompt_tokens
        self.sent = sent
        """False: grace held it back (the limit was learned while it waited), the server never saw it."""


def context_error(status: int | None, message: str) -> ContextError | None:
    """A ContextError if an HTTP error says the request exceeds the context, else None."""
    low = message.lower()
    if status not in (400, 413, 422, 500) or not any(m in low for m in _MARKERS):
        return None
    limit = next((int(m.group(1)) for p in _LIMIT if (m := p.search(message))), None)
    prompt = next((int(m.group(1)) for p in _PROMPT if (m := p.search(message))), None)
    return ContextError(message, limit, prompt)


def chars(messages: Messages) -> int:
    return sum(len(m.get("content") or "") for m in messages)


@dataclass
class ContextBudget:
    """What fits: the server's context (0 = unknown) and a calibrated chars-per-token ratio."""

    limit: int = 0
    max_tokens: int = 2048
    chars_per_token: float = 3.0
    """Conservative; lowered when a context error reports the true prompt size. Not calibrated
    on every reply: the requests of a run must not depend on the order replies arrive in."""
    learned: bool = False
    """chars_per_token comes from a server's count."""

    def estimate(self, messages: Messages) -> int:
        """Estimated prompt tokens of `messages` (rounded up, with per-message overhead)."""
        return int(chars(messages) / self.chars_per_token) + 1 + _PER_MESSAGE * len(messages)

    def learn(self, exc: ContextError, messages: Messages) -> None:
        """Take the limit and the true prompt size (5% safety) from a context error."""
        if exc.limit:
            self.limit = exc.limit
        spare = (exc.prompt_tokens or 0) - _PER_MESSAGE * len(messages)
        if spare > 0:
            ratio = round(0.95 * chars(messages) / spare, 4)
            if ratio > 0.5:  # the server's own count replaces the guess; later counts only lower it
                self.chars_per_token = min(self.chars_per_token, ratio) if self.learned else ratio
                self.learned = True

    def check(self, messages: Messages, max_tokens: int) -> None:
        """Raise ContextError (not sent) if a built request no longer fits the known limit."""
        if self.limit and self.limit - self.estimate(messages) - MARGIN < max_tokens:
            raise ContextError(f"held back: ~{self.estimate(messages)} prompt tokens + {max_tokens} exceed the "
                               f"context of {self.limit}", sent=False)

    def room(self, messages: Messages) -> int:
        """Completion tokens that fit after `messages` (max_tokens when the limit is unknown)."""
        if not self.limit:
            return self.max_tokens
        return min(self.max_tokens, self.limit - self.estimate(messages) - MARGIN)

    def fit(self, build: Callable[[int], Messages]) -> tuple[Messages, int]:
        """(messages, max_tokens) at the first level leaving room for the full max_tokens, else at
        the first leaving at least MIN_COMPLETION; raise ContextError when none does."""
        floor = min(MIN_COMPLETION, self.max_tokens)
        built = [build(level) for level in range(LEVELS)] if self.limit else [build(0)]
        for need in (self.max_tokens, floor):
            for messages in built:
                if self.room(messages) >= need:
                    return messages, self.room(messages)
        smallest = built[-1]
        raise ContextError(
            f"the prompt (~{self.estimate(smallest)} tokens even shrunk) plus {floor} completion tokens does not "
            f"fit the server's context of {self.limit} tokens", self.limit, self.estimate(smallest))

    def describe(self, exc: ContextError, model: str) -> str:
        """The one line that stops a run on a context error that shrinking cannot fix."""
        limit = f"{exc.limit or self.limit} tokens" if (exc.limit or self.limit) else "an unknown size"
        return (f"LLM context too small: model {model!r} has a context of {limit}; grace's prompts need ~"
                f"{exc.prompt_tokens or '?'} tokens plus the completion (llm.max_tokens={self.max_tokens}). Serve "
                "the model with a larger context (llama.cpp -c 8192, llama-cpp-python --n_ctx 8192, vLLM "
                f"--max-model-len 8192) or set --llm-context-length / --llm-max-tokens. Server said: {exc}"[:600])
