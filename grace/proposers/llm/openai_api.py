"""`LLMProposer`: any OpenAI-compatible chat-completions endpoint (llama.cpp, llama-cpp-python,
Ollama, vLLM's server, OpenAI, ...) through `openai.AsyncOpenAI`.

Servers as they are: before the first request the server is probed (`probe`): its parallelism
sets how many requests are sent at once when `llm.concurrency` is 0, so no request waits in the
server's own queue while its timeout runs (the timeout counts from sending: grace's own queue
never counts). A request to a local server that times out is abandoned (its connection closed),
never resent behind the server's queue (with the same seed it would only time out again); a remote
API's timeout is retried like a 5xx. 429/5xx/connection errors are retried with capped exponential backoff plus
jitter (a server's Retry-After honoured up to the cap). A context error (400 naming the context
length) is raised as `ContextError` for `ChatProposer.ask` to shrink the prompt. `n` samples per
request: a 400 on n > 1, or fewer choices than asked, falls back to single requests (remembered).
A grammar (`ChatProposer.grammar`) goes in the request's `grammar` field (llama.cpp family) or
vLLM's `guided_grammar`.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Callable
from typing import Any

from grace.config import LLMConfig
from grace.proposers.base import CallRecorder
from grace.proposers.llm.cache import ReplyCache
from grace.proposers.llm.chat import ChatProposer, LLMConfigError, Sample, TransportError
from grace.proposers.llm.context import Messages, context_error
from grace.proposers.llm.probe import default_concurrency, probe_server


class LLMProposer(ChatProposer):
    """OpenAI-compatible endpoint (see module docstring). Key from env var cfg.api_key_env."""

    name = "llm"
    backoff_base = 1.0
    """Seconds of the first retry wait (doubles per attempt, with jitter)."""
    backoff_cap = 30.0
    """Longest wait between attempts (also caps a server's Retry-After)."""

    def __init__(self, cfg: LLMConfig, recorder: CallRecorder | None = None, client: Any = None,
                 cache: ReplyCache | None = None,
                 open_source: Callable[[str], CallRecorder] | None = None) -> None:
        super().__init__(cfg, recorder, cache, open_source)
        self._given_client = client
        self._client: Any = client
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None
        self.slots = int(cfg.concurrency)
        """Requests sent at once (llm.concurrency, or from the probe when that is 0)."""

    def _key(self) -> str:
        return os.environ.get(self.cfg.api_key_env) or "EMPTY"

    async def probe(self) -> dict[str, Any]:
        return await probe_server(self.cfg.base_url, self.model, self._key())

    def apply_server(self, facts: dict[str, Any], ctx: Any) -> None:
        super().apply_server(facts, ctx)
        if not self.cfg.concurrency:
            self.slots = default_concurrency(facts)

    def _bind(self) -> tuple[Any, asyncio.Semaphore]:
        """Client and semaphore for the running event loop (recreated when the loop changes)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._sem is None:
            self._loop = loop
            self._sem = asyncio.Semaphore(max(1, self.slots or 1))
            if self._given_client is None:
                import openai

                self._client = openai.AsyncOpenAI(base_url=self.cfg.base_url or None, api_key=self._key(),
                                                  max_retries=0, timeout=self.cfg.timeout)
        return self._client, self._sem

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = min(self.backoff_cap, self.backoff_base * 2**attempt) * (0.5 + random.random())
        if retry_after is not None:
            wait = max(wait, min(self.backoff_cap, retry_after))
        return min(wait, self.backoff_cap)

    def _extra_body(self, params: dict[str, Any]) -> dict[str, Any] | None:
        grammar = params.get("grammar")
        if not grammar:
            return None
        return {"guided_grammar": grammar} if self.server.get("kind") == "vllm" else {"grammar": grammar}

    async def _request(self, operator: str, messages: Messages, params: dict[str, Any], key: str) -> list[Sample]:
        import openai

        client, sem = self._bind()
        n = int(params["n"])
        attempt = 0
        while True:
            async with sem:
                self.context.check(messages, int(params["max_tokens"]))  # the limit may be new since it was built
                self.admit()  # counted when sent; raises BudgetExhausted instead of overshooting
                t0 = time.perf_counter()
                try:
                    resp = await client.chat.completions.create(
                        model=self.model, messages=messages, temperature=params["temperature"],
                        max_tokens=params["max_tokens"], n=n, seed=params["seed"], timeout=self.cfg.timeout,
                        extra_body=self._extra_body(params))
                except openai.APIError as exc:
                    latency = time.perf_counter() - t0
                    failure = exc
                except asyncio.CancelledError:  # the run stopped (a budget, an error) while it was out
                    self.record(key=key, operator=operator, messages=messages, reply=None,
                                latency=time.perf_counter() - t0, error="Cancelled: abandoned when the run stopped")
                    raise
                else:
                    failure = None
            if failure is not None:
                retry = self._failed(failure, operator, messages, key, n, latency, attempt)
                await asyncio.sleep(retry)
                attempt += 1
                continue
            latency = time.perf_counter() - t0
            texts = [(c.message.content or "") for c in sorted(resp.choices, key=lambda c: c.index)]
            usage = getattr(resp, "usage", None)
            pt = int(getattr(usage, "prompt_tokens", 0) or 0)
            ct = int(getattr(usage, "completion_tokens", 0) or 0)
            self.record(key=key, operator=operator, messages=messages, reply=texts, prompt_tokens=pt,
                        completion_tokens=ct, latency=latency, error=None if texts else "no choices")
            if not texts:
                raise TransportError("the server returned no choices")
            share = max(1, len(texts))
            return [Sample(t, key, False, pt // share, ct // share) for t in texts]

    def _failed(self, exc: Exception, operator: str, messages: Messages, key: str, n: int, latency: float,
                attempt: int) -> float:
        """Record a failed attempt; the seconds to wait before retrying it, or raise."""
        import openai

        status = getattr(exc, "status_code", None)
        message = _short(exc)
        error = f"{type(exc).__name__}{f' {status}' if status else ''}: {message}"
        self.record(key=key, operator=operator, messages=messages, reply=None, latency=latency, error=error)
        overflow = context_error(status, _full(exc))
        if overflow is not None:
            raise overflow
        if status == 400 and n > 1:
            self._n_supported = False
            self.stats["n_fallback"] += 1
            raise _NRejected()
        if status in (401, 403, 404):
            raise LLMConfigError(f"LLM server {self.cfg.base_url} refused model {self.model!r}: {error}")
        if isinstance(exc, openai.APITimeoutError) and self.server.get("local", True):
            self.stats["timeouts"] += 1
            raise TransportError(f"{error} after {self.cfg.timeout:g} s (abandoned, not resent: raise --llm-timeout "
                                 "or lower --llm-max-tokens)")
        retryable = isinstance(exc, openai.APIConnectionError) or status in (408, 409, 425, 429) or (
            status is not None and status >= 500)
        if not retryable or attempt >= self.cfg.retries:
            raise TransportError(f"{error} (after {attempt + 1} attempt(s))")
        self.stats["retries"] += 1
        return self._backoff(attempt, _retry_after(exc))

    async def sample(self, operator: str, messages: Messages, n: int, seed: int, max_tokens: int | None = None,
                     program: bool = True) -> list[Sample]:
        try:
            return await super().sample(operator, messages, n, seed, max_tokens, program)
        except _NRejected:
            return await self.singles(operator, messages, n, seed, max_tokens, program)


class _NRejected(Exception):
    """The server rejected n > 1 with a 400: fall back to single requests."""


def _full(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    return f"{getattr(exc, 'message', '') or exc} {body if body is not None else ''}"


def _short(exc: Exception, limit: int = 300) -> str:
    msg = getattr(exc, "message", None) or str(exc)
    return " ".join(str(msg).split())[:limit]


def _retry_after(exc: Exception) -> float | None:
    response = getattr(exc, "response", None)
    value = response.headers.get("retry-after") if response is not None else None
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
