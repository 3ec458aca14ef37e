"""LLM proposers: prompt building, reply handling, caching, budgets and cost accounting.

`ChatProposer` holds everything that does not depend on the transport: it renders the
templates of `prompts/`, looks every request up in the reply cache (`grace.proposers.llm.cache`),
enforces the call and token budgets, records every call in the run archive *before* its reply
is used, extracts and validates programs, and feeds garbage back once (one repair request).
Subclasses only implement `_request` (one request -> list of reply texts):

- `LLMProposer`: any OpenAI-compatible endpoint (vLLM's server, OpenAI, ...) through
  `openai.AsyncOpenAI`, with bounded concurrency, `n` samples per request (falling back to
  parallel single requests, remembered, when the server rejects n > 1), per-request timeout and
  retries with capped exponential backoff plus jitter on 429/5xx/connection/timeout errors.
- `grace.proposers.llm.vllm.VLLMProposer`: vLLM in-process batch generation.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grace.config import ConfigError, LLMConfig
from grace.program import ProgramError, extract_program, strip_reasoning
from grace.proposers.base import BudgetExhausted, CallRecorder, Feedback, Proposal, TaskContext
from grace.proposers.llm.cache import ReplyCache, cache_paths, make_cache, request_key
from grace.proposers.llm.prompts import PromptLibrary, context_vars, feedback_vars

REPAIR = ("Your reply could not be used: {error}\n\nReply with the corrected, complete program (a module "
          "with `def reward(s, a, s_next, p)`) in one ```python block.")
REPAIR_GOALS = "End your reply with one line `GOALS: [i, j, ...]` listing the numbers of the states that solve the task."
_SEED_MOD = 2**31 - 1


class LLMConfigError(ConfigError):
    """The server refused us for a reason retrying cannot fix (bad key, unknown model)."""


class TransportError(RuntimeError):
    """A request failed for good (retries spent, or rejected); the proposal carries the error."""


@dataclass
class Sample:
    """One reply text and where it came from."""

    text: str
    key: str
    cached: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0


def derive_seed(seed: int, k: int) -> int:
    """The seed of the k-th single request standing in for one request with n samples."""
    return (int(seed) * 1_000_003 + 7_919 * (k + 1)) % _SEED_MOD


def garbage_kind(error: str) -> str:
    """Classify why a reply is unusable: no_code | syntax | signature | invalid."""
    if error.startswith("no reward program found"):
        return "no_code"
    if "syntax error" in error:
        return "syntax"
    if "must take exactly 4 arguments" in error or "no `def reward" in error:
        return "signature"
    return "invalid"


def parse_goal_indices(text: str, n: int) -> list[int] | None:
    """Indices in [0, n) from a label_goals reply (`GOALS: [..]`, else the last [..] list); None if none."""
    text = strip_reasoning(text)
    found = re.findall(r"GOALS\s*[:=]\s*\[([^\]]*)\]", text, flags=re.I)
    if not found:
        found = re.findall(r"\[([\d\s,]*)\]", text)
    if not found:
        return None
    nums = [int(x) for x in re.findall(r"-?\d+", found[-1])]
    return sorted({i for i in nums if 0 <= i < n})


class ChatProposer:
    """Transport-independent LLM proposer (see module docstring). Subclasses define `_request`."""

    name = "llm"
    reask_duplicates = 0
    """Every call costs: a duplicate is kept (and scored as a duplicate), not re-asked."""

    def __init__(self, cfg: LLMConfig, recorder: CallRecorder | None = None, cache: ReplyCache | None = None,
                 open_source: Callable[[str], CallRecorder] | None = None) -> None:
        """`open_source(path)` opens another run's recorded replies read-only (for
        `llm.cache_from`; `grace.api` passes `grace.search.archive.open_reply_source`)."""
        self.cfg = cfg
        self.recorder = recorder
        self.model = cfg.model
        self.prompts = PromptLibrary(cfg.prompts_dir or None)
        self.concurrency: int | None = max(1, int(cfg.concurrency))
        # the config alone decides (llm.cache_from, llm.replay_only): no environment override
        paths = cache_paths(cfg.cache_from)
        if cache is None and paths and open_source is None:
            raise LLMConfigError("llm.cache_from needs a way to open run archives (pass open_source)")
        sources = [open_source(p) for p in paths] if paths and open_source is not None else []
        self.cache = cache if cache is not None else make_cache(recorder, sources, cfg.replay_only)
        self.calls = 0
        """Requests sent to a model (failed attempts included; cache hits excluded)."""
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.per_operator: dict[str, dict[str, float]] = {}
        """Per operator: calls, errors, cached, prompt_tokens, completion_tokens, latency (s)."""
        self.stats: Counter[str] = Counter()
        """Garbage and failures: garbage, no_code, syntax, signature, invalid, repaired, failed, ..."""
        self._n_supported = True
        self._resume_counts()

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens spent so far (this run, across resumes)."""
        return self.prompt_tokens + self.completion_tokens

    def _resume_counts(self) -> None:
        stats = getattr(self.recorder, "call_stats", None)
        if stats is None:
            return
        for row in stats():
            self.calls += int(row["calls"] or 0) - int(row["cached"] or 0)
            self.prompt_tokens += int(row["prompt_tokens"] or 0)
            self.completion_tokens += int(row["completion_tokens"] or 0)

    # -- transport (subclasses) ------------------------------------------------------------
    async def _request(self, operator: str, messages: list[dict[str, str]], n: int, seed: int,
                       key: str) -> list[Sample]:
        """Send one request (n samples); record every attempt; raise TransportError on failure."""
        raise NotImplementedError

    def _params(self, n: int, seed: int) -> dict[str, Any]:
        return {"temperature": self.cfg.temperature, "max_tokens": self.cfg.max_tokens, "n": n, "seed": seed}

    # -- budgets, accounting, recording ----------------------------------------------------
    def check_budget(self) -> None:
        """Raise BudgetExhausted if another call would exceed max_calls or max_tokens_total."""

        cfg = self.cfg
        if cfg.max_calls and self.calls >= cfg.max_calls:
            raise BudgetExhausted(f"LLM call budget reached ({self.calls} of max_calls={cfg.max_calls})")
        if cfg.max_tokens_total and self.tokens >= cfg.max_tokens_total:
            raise BudgetExhausted(f"LLM token budget reached ({self.tokens} of max_tokens_total={cfg.max_tokens_total})")

    def record(self, *, key: str, operator: str, messages: list[dict[str, str]], reply: list[str] | None,
               prompt_tokens: int = 0, completion_tokens: int = 0, latency: float = 0.0,
               error: str | None = None, cached: bool = False) -> None:
        """Account for one call and persist it (before its reply is used)."""
        op = self.per_operator.setdefault(operator, dict.fromkeys(
            ("calls", "errors", "cached", "prompt_tokens", "completion_tokens", "latency"), 0))
        if cached:
            op["cached"] += 1
        else:
            self.calls += 1
            self.prompt_tokens += prompt_tokens
            self.completion_tokens += completion_tokens
            op["calls"] += 1
            op["prompt_tokens"] += prompt_tokens
            op["completion_tokens"] += completion_tokens
            op["latency"] += latency
        if error:
            op["errors"] += 1
        if self.recorder is not None:
            self.recorder.record_call({
                "key": key, "operator": operator, "model": self.model, "prompt": messages, "reply": reply,
                "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                "latency": latency, "error": error, "cached": cached})

    # -- sampling with cache ----------------------------------------------------------------
    async def sample(self, operator: str, messages: list[dict[str, str]], n: int, seed: int) -> list[Sample]:
        """`n` replies to `messages`: from the cache when stored, else from the model."""
        seed = int(seed) % _SEED_MOD
        key = request_key(self.model, messages, self._params(n, seed))
        row = self.cache.lookup(key)
        if row is not None and len(row["reply"]) >= n:
            texts = [str(t) for t in row["reply"][:n]]
            self.record(key=key, operator=operator, messages=messages, reply=texts, cached=True)
            return [Sample(t, key, cached=True) for t in texts]
        if n > 1 and (not self._n_supported or self.cache.replay_only):
            return await self.singles(operator, messages, n, seed)
        self.cache.missing(key, operator)
        return await self._request(operator, messages, n, seed, key)

    async def singles(self, operator: str, messages: list[dict[str, str]], n: int, seed: int) -> list[Sample]:
        """n parallel single-sample requests standing in for one request with n samples."""
        parts = await asyncio.gather(*(self.sample(operator, messages, 1, derive_seed(seed, k)) for k in range(n)))
        return [s for part in parts for s in part]

    # -- reply handling ---------------------------------------------------------------------
    def _program(self, text: str, ctx: TaskContext) -> tuple[str | None, str | None]:
        try:
            return extract_program(text).validate(ctx.schema).source, None
        except ProgramError as exc:
            return None, str(exc)

    def _meta(self, samples: list[Sample], **extra: Any) -> dict[str, Any]:
        return {"model": self.model, "calls": [s.key for s in samples],
                "prompt_tokens": sum(s.prompt_tokens for s in samples),
                "completion_tokens": sum(s.completion_tokens for s in samples),
                "cached": all(s.cached for s in samples)} | extra

    async def _finish(self, ctx: TaskContext, operator: str, messages: list[dict[str, str]],
                      samples: list[Sample], seed: int, parents: tuple[str, ...]) -> Proposal:
        """The first valid program among `samples`; else one repair request; else a counted failure."""
        errors = []
        for s in samples:
            source, err = self._program(s.text, ctx)
            if source is not None:
                return Proposal(source, operator, parents, meta=self._meta([s]))
            errors.append(err or "unusable reply")
            self.stats["garbage"] += 1
            self.stats[garbage_kind(errors[-1])] += 1
        first = samples[0]
        repair = [*messages, {"role": "assistant", "content": strip_reasoning(first.text)[:8000]},
                  {"role": "user", "content": REPAIR.format(error=errors[0])}]
        try:
            fixed = (await self.sample(f"{operator}:repair", repair, 1, seed))[0]
        except TransportError as exc:
            self.stats["failed"] += 1
            return Proposal(None, operator, parents, error=f"{errors[0]}; repair request failed: {exc}",
                            meta=self._meta(samples))
        source, err = self._program(fixed.text, ctx)
        meta = self._meta([*samples, fixed], repaired=source is not None, first_error=errors[0])
        if source is not None:
            self.stats["repaired"] += 1
            return Proposal(source, operator, parents, meta=meta)
        self.stats["failed"] += 1
        self.stats[f"repair_{garbage_kind(err or '')}"] += 1
        return Proposal(None, operator, parents, error=f"{errors[0]} (after one repair request: {err})", meta=meta)

    def _messages(self, template: str, ctx: TaskContext, **variables: Any) -> list[dict[str, str]]:
        base = context_vars(ctx)
        return [{"role": "system", "content": self.prompts.render("system", **base)},
                {"role": "user", "content": self.prompts.render(template, **base, **variables)}]

    async def _one(self, ctx: TaskContext, operator: str, messages: list[dict[str, str]], seed: int,
                   parents: tuple[str, ...]) -> Proposal:
        try:
            samples = await self.sample(operator, messages, max(1, self.cfg.n), seed)
        except TransportError as exc:
            self.stats["request_failed"] += 1
            return Proposal(None, operator, parents, error=f"LLM request failed: {exc}", meta={"model": self.model})
        return await self._finish(ctx, operator, messages, samples, seed, parents)

    # -- the Proposer protocol ---------------------------------------------------------------
    async def init(self, ctx: TaskContext, n: int, seed: int) -> list[Proposal]:
        """`n` fresh programs; requests of up to cfg.n samples each, distinct seeds."""
        messages = self._messages("init", ctx)
        per = max(1, self.cfg.n)
        sizes = [min(per, n - i) for i in range(0, n, per)]

        async def batch(i: int, size: int) -> list[Proposal]:
            s = derive_seed(seed, 1000 + i)
            try:
                samples = await self.sample("init", messages, size, s)
            except TransportError as exc:
                self.stats["request_failed"] += 1
                return [Proposal(None, "init", error=f"LLM request failed: {exc}", meta={"model": self.model})] * size
            return list(await asyncio.gather(*(self._finish(ctx, "init", messages, [smp], derive_seed(s, j), ())
                                               for j, smp in enumerate(samples))))

        parts = await asyncio.gather(*(batch(i, size) for i, size in enumerate(sizes)))
        return [p for part in parts for p in part][:n]

    async def mutate(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        messages = self._messages("mutate", ctx, parent=feedback_vars(parent))
        return await self._one(ctx, "mutate", messages, seed, (parent.program_id,))

    async def crossover(self, ctx: TaskContext, a: Feedback, b: Feedback, seed: int) -> Proposal:
        messages = self._messages("crossover", ctx, a=feedback_vars(a), b=feedback_vars(b))
        return await self._one(ctx, "crossover", messages, seed, (a.program_id, b.program_id))

    async def simplify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        messages = self._messages("simplify", ctx, parent=feedback_vars(parent))
        return await self._one(ctx, "simplify", messages, seed, (parent.program_id,))

    async def shaping(self, ctx: TaskContext, parent: Feedback, trajectories: list[dict[str, Any]],
                      seed: int) -> Proposal:
        """GRACE's shaping step: a reward that rises along whole expert trajectories.

        `trajectories`: [{"states": [{field: value}, ...], "rewards": [float, ...], "return": float?}].
        """
        messages = self._messages("shaping", ctx, parent=feedback_vars(parent), trajectories=trajectories)
        return await self._one(ctx, "shaping", messages, seed, (parent.program_id,))

    async def label_goals(self, ctx: TaskContext, candidates: list[dict[str, Any]], seed: int) -> list[int]:
        """GRACE step 1: indices of `candidates` ([{"state": {...}}]) the LLM says solve the task."""
        messages = self._messages("label_goals", ctx, candidates=candidates)
        try:
            reply = (await self.sample("label_goals", messages, 1, seed))[0]
            found = parse_goal_indices(reply.text, len(candidates))
            if found is None:
                self.stats["goals_unparsed"] += 1
                repair = [*messages, {"role": "assistant", "content": strip_reasoning(reply.text)[:8000]},
                          {"role": "user", "content": REPAIR_GOALS}]
                reply = (await self.sample("label_goals:repair", repair, 1, seed))[0]
                found = parse_goal_indices(reply.text, len(candidates))
        except TransportError:
            self.stats["request_failed"] += 1
            found = None
        if found is None:
            self.stats["goals_failed"] += 1
            return []
        return found


class LLMProposer(ChatProposer):
    """OpenAI-compatible endpoint (vLLM server, OpenAI, ...). Key from env var cfg.api_key_env."""

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

    def _bind(self) -> tuple[Any, asyncio.Semaphore]:
        """Client and semaphore for the running event loop (recreated when the loop changes)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._sem is None:
            self._loop = loop
            self._sem = asyncio.Semaphore(max(1, self.cfg.concurrency))
            if self._given_client is None:
                import openai

                self._client = openai.AsyncOpenAI(
                    base_url=self.cfg.base_url or None, api_key=os.environ.get(self.cfg.api_key_env) or "EMPTY",
                    max_retries=0, timeout=self.cfg.timeout)
        return self._client, self._sem

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        wait = min(self.backoff_cap, self.backoff_base * 2**attempt) * (0.5 + random.random())
        if retry_after is not None:
            wait = max(wait, min(self.backoff_cap, retry_after))
        return min(wait, self.backoff_cap)

    async def _request(self, operator: str, messages: list[dict[str, str]], n: int, seed: int,
                       key: str) -> list[Sample]:
        import openai

        client, sem = self._bind()
        attempt = 0
        while True:
            self.check_budget()
            t0 = time.perf_counter()
            try:
                async with sem:
                    t0 = time.perf_counter()
                    resp = await client.chat.completions.create(
                        model=self.model, messages=messages, temperature=self.cfg.temperature,
                        max_tokens=self.cfg.max_tokens, n=n, seed=seed, timeout=self.cfg.timeout)
            except openai.APIError as exc:
                latency = time.perf_counter() - t0
                status = getattr(exc, "status_code", None)
                error = f"{type(exc).__name__}{f' {status}' if status else ''}: {_short(exc)}"
                self.record(key=key, operator=operator, messages=messages, reply=None, latency=latency, error=error)
                if status == 400 and n > 1:
                    self._n_supported = False
                    self.stats["n_fallback"] += 1
                    return await self.singles(operator, messages, n, seed)
                if status in (401, 403, 404):
                    raise LLMConfigError(f"LLM server {self.cfg.base_url} refused model {self.model!r}: {error}") from None
                retryable = isinstance(exc, openai.APIConnectionError) or status in (408, 409, 425, 429) or (
                    status is not None and status >= 500)
                if not retryable or attempt >= self.cfg.retries:
                    raise TransportError(f"{error} (after {attempt + 1} attempt(s))") from None
                self.stats["retries"] += 1
                await asyncio.sleep(self._backoff(attempt, _retry_after(exc)))
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
