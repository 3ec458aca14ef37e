"""LLM proposers: prompt building, reply handling, caching, budgets and cost accounting.

`ChatProposer` holds everything that does not depend on the transport: it renders the
templates of `prompts/` to fit the server's context (`grace.proposers.llm.context`), looks every
request up in the reply cache (`grace.proposers.llm.cache`), counts calls when they are sent
(`grace.proposers.llm.accounting`), records every call in the run archive *before* its reply is
used, extracts and validates programs, and feeds garbage back once (one repair request).
Subclasses only implement `_request` (one request -> list of reply texts):

- `grace.proposers.llm.openai_api.LLMProposer`: any OpenAI-compatible endpoint (llama.cpp,
  llama-cpp-python, Ollama, vLLM's server, OpenAI, ...).
- `grace.proposers.llm.vllm.VLLMProposer`: vLLM in-process batch generation.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from grace.config import ConfigError, LLMConfig
from grace.program import ProgramError, extract_program, strip_reasoning
from grace.proposers.base import CallRecorder, Feedback, Proposal, TaskContext
from grace.proposers.llm.accounting import CallLedger
from grace.proposers.llm.cache import ReplyCache, cache_paths, make_cache, request_key
from grace.proposers.llm.context import ContextBudget, ContextError, Messages
from grace.proposers.llm.labels import PREVIOUS, REPAIR_GOALS, REPAIR_POLICY, parse_indices, repair
from grace.proposers.llm.prompts import PromptLibrary, build_messages

REPAIR = ("Your reply could not be used: {error}\n\nReply with the corrected, complete program (a module "
          "with `def reward(s, a, s_next, p)`) in one ```python block.")
_SEED_MOD = 2**31 - 1
class LLMConfigError(ConfigError):
    """The server refused us for a reason retrying cannot fix (bad key, unknown model, context)."""


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


class ChatProposer:
    """Transport-independent LLM proposer (see module docstring). Subclasses define `_request`."""

    name = "llm"
    reask_duplicates = 0
    """Every call costs: a duplicate is kept (and scored as a duplicate), not re-asked."""
    takes_grammar = True
    """Whether the transport sends `grammar` (llm.grammar) to its model."""

    def __init__(self, cfg: LLMConfig, recorder: CallRecorder | None = None, cache: ReplyCache | None = None,
                 open_source: Callable[[str], CallRecorder] | None = None) -> None:
        """`open_source(path)` opens another run's recorded replies read-only (for
        `llm.cache_from`; `grace.api` passes `grace.search.archive.open_reply_source`)."""
        self.cfg = cfg
        self.recorder = recorder
        self.model = cfg.model
        self.prompts = PromptLibrary(cfg.prompts_dir or None)
        self.concurrency: int | None = max(1, int(cfg.concurrency or 4))
        """Proposals the loop keeps in flight (requests are admitted to the server separately)."""
        # the config alone decides (llm.cache_from, llm.replay_only): no environment override
        paths = cache_paths(cfg.cache_from)
        if cache is None and paths and open_source is None:
            raise LLMConfigError("llm.cache_from needs a way to open run archives (pass open_source)")
        sources = [open_source(p) for p in paths] if paths and open_source is not None else []
        self.cache = cache if cache is not None else make_cache(recorder, sources, cfg.replay_only)
        self.ledger = CallLedger(cfg.max_calls, cfg.max_tokens_total)
        self.context = ContextBudget(limit=int(cfg.context_length or 0), max_tokens=int(cfg.max_tokens))
        self.grammar: str | None = None
        """A GBNF grammar of reward programs sent with program requests (servers that take one)."""
        self.per_operator: dict[str, dict[str, float]] = {}
        """Per operator: calls, errors, cached, prompt_tokens, completion_tokens, latency (s)."""
        self.stats: Counter[str] = Counter()
        """Garbage and failures: garbage, no_code, syntax, signature, invalid, repaired, failed, ..."""
        self._n_supported = True
        self.server: dict[str, Any] = {}
        """What grace knows of the server (kind, slots, context_length, chars_per_token, grammar),
        persisted in the archive's meta so a resumed or replayed run builds the same requests."""
        self._ready = False
        self._prep: asyncio.Task[None] | None = None
        stats = getattr(self.recorder, "call_stats", None)
        if stats is not None:
            self.ledger.resume(stats())

    @property
    def calls(self) -> int:
        """Requests sent to a model (failed attempts included; cache hits excluded)."""
        return self.ledger.calls

    @property
    def prompt_tokens(self) -> int:
        return self.ledger.prompt_tokens

    @property
    def completion_tokens(self) -> int:
        return self.ledger.completion_tokens

    @property
    def tokens(self) -> int:
        """Prompt plus completion tokens spent so far (this run, across resumes)."""
        return self.ledger.tokens

    # -- transport (subclasses) ------------------------------------------------------------
    async def probe(self) -> dict[str, Any]:
        """What the transport can tell of its server before the first request (see `server`)."""
        return {}

    def apply_server(self, facts: dict[str, Any], ctx: TaskContext | None) -> None:
        """Take the server's facts: context length (unless configured) and the grammar."""
        self.server = dict(facts)
        if not self.cfg.context_length and facts.get("context_length"):
            self.context.limit = int(facts["context_length"])
        if facts.get("chars_per_token_learned"):
            self.context.chars_per_token = float(facts["chars_per_token_learned"])
            self.context.learned = True
        mode = getattr(self.cfg, "grammar", "off")
        if ctx is not None and self.takes_grammar and (mode == "on" or (mode == "auto" and facts.get("grammar"))):
            from grace.proposers.llm.grammar import program_grammar
            from grace.proposers.llm.prompts import xp_names

            self.grammar = program_grammar(ctx.schema, xp_names())

    def _stored_server(self) -> dict[str, Any] | None:
        sources = [self.recorder, *(self.cache.sources if self.cache.replay_only else [])]
        for src in sources:
            facts = getattr(src, "get_meta", lambda key: None)("llm_server")
            if facts is not None:
                return dict(facts)
        return None

    def _store_server(self) -> None:
        self.server["context_length"] = self.context.limit
        if self.context.learned:
            self.server["chars_per_token_learned"] = self.context.chars_per_token
        setter = getattr(self.recorder, "set_meta", None)
        if setter is not None:
            setter("llm_server", self.server)

    async def prepare(self, ctx: TaskContext | None = None) -> None:
        """Before the first prompt is built: the server's facts from the archive (a resumed run),
        the replayed run's archive (replay-only), else from a probe of the server."""
        if self._ready:
            return
        loop = asyncio.get_running_loop()
        if self._prep is None or self._prep.get_loop() is not loop:
            self._prep = loop.create_task(self._prepare(ctx))
        await self._prep

    async def _prepare(self, ctx: TaskContext | None) -> None:
        facts = self._stored_server()
        if facts is None:
            facts = {} if self.cache.replay_only else await self.probe()
            self.apply_server(facts, ctx)
            self._store_server()
        else:
            self.apply_server(facts, ctx)
        self._ready = True

    async def _request(self, operator: str, messages: Messages, params: dict[str, Any], key: str) -> list[Sample]:
        """Send one request (`params`: n, seed, max_tokens, ...); call `admit()` right before
        sending; record every attempt; raise TransportError on failure, ContextError when the
        server says the request does not fit its context."""
        raise NotImplementedError

    def _params(self, n: int, seed: int, max_tokens: int, program: bool) -> dict[str, Any]:
        params: dict[str, Any] = {"temperature": self.cfg.temperature, "max_tokens": max_tokens, "n": n, "seed": seed}
        if program and self.grammar:
            params["grammar"] = self.grammar
        return params

    # -- budgets, accounting, recording ----------------------------------------------------
    def check_budget(self) -> None:
        """Raise BudgetExhausted if another call would exceed max_calls or max_tokens_total."""
        self.ledger.check()

    def admit(self) -> None:
        """A request is about to be sent: raise BudgetExhausted if it would exceed a budget, else count it."""
        self.ledger.admit()

    def record(self, *, key: str, operator: str, messages: Messages, reply: list[str] | None,
               prompt_tokens: int = 0, completion_tokens: int = 0, latency: float = 0.0,
               error: str | None = None, cached: bool = False) -> None:
        """Account for one call (admitted earlier unless cached) and persist it before its reply is used."""
        op = self.per_operator.setdefault(operator, dict.fromkeys(
            ("calls", "errors", "cached", "prompt_tokens", "completion_tokens", "latency"), 0))
        if cached:
            op["cached"] += 1
            self.ledger.cached += 1
        else:
            self.ledger.settle(error=error, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               latency=latency)
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

    def summary(self) -> dict[str, Any]:
        """calls, replies, failed attempts, errors by kind, tokens, seconds, garbage stats."""
        return self.ledger.summary() | {"stats": dict(self.stats), "context_length": self.context.limit,
                                        "grammar": bool(self.grammar)}

    # -- sampling with cache ----------------------------------------------------------------
    async def sample(self, operator: str, messages: Messages, n: int, seed: int, max_tokens: int | None = None,
                     program: bool = True) -> list[Sample]:
        """`n` replies to `messages`: from the cache when stored, else from the model. A server
        answering fewer than `n` choices gets the rest as single requests (remembered)."""
        seed = int(seed) % _SEED_MOD
        params = self._params(n, seed, int(max_tokens or self.cfg.max_tokens), program)
        key = request_key(self.model, messages, params)
        row = self.cache.lookup(key)
        if row is not None:
            texts = [str(t) for t in row["reply"][:n]]
            self.record(key=key, operator=operator, messages=messages, reply=texts, cached=True)
            got = [Sample(t, key, cached=True) for t in texts]
            return got + (await self.singles(operator, messages, n, seed, max_tokens, program, len(got))
                          if len(got) < n else [])
        if n > 1 and (not self._n_supported or self.cache.replay_only):
            return await self.singles(operator, messages, n, seed, max_tokens, program)
        self.cache.missing(key, operator)
        got = await self._request(operator, messages, params, key)
        if len(got) < n:
            self._n_supported = False
            self.stats["n_fallback"] += 1
            got += await self.singles(operator, messages, n, seed, max_tokens, program, len(got))
        return got

    async def singles(self, operator: str, messages: Messages, n: int, seed: int, max_tokens: int | None = None,
                      program: bool = True, start: int = 0) -> list[Sample]:
        """Single-sample requests k = start..n-1 standing in for one request with n samples."""
        parts = await asyncio.gather(*(self.sample(operator, messages, 1, derive_seed(seed, k), max_tokens, program)
                                       for k in range(start, n)))
        return [s for part in parts for s in part]

    async def ask(self, ctx: TaskContext, operator: str, build: Callable[[int], Messages], n: int, seed: int,
                  program: bool = True) -> tuple[Messages, list[Sample]]:
        """Build the prompt to fit the context, send it; on a context error learn the limit (and the
        true prompt size) and send it again shrunk, never unchanged; a context error that shrinking
        cannot fix stops the run with one line."""
        await self.prepare(ctx)
        sent: tuple[Messages, int] | None = None
        last = ContextError("the request does not fit the server's context")
        for _ in range(3):
            try:
                messages, max_tokens = self.context.fit(build)
                if (messages, max_tokens) == sent:
                    break
                sent = (messages, max_tokens)
                return messages, await self.sample(operator, messages, n, seed, max_tokens, program)
            except ContextError as exc:
                self.stats["context_error" if exc.sent else "context_held_back"] += 1
                if sent is not None:
                    self.context.learn(exc, sent[0])
                    self._store_server()
                last = exc
                continue
        raise LLMConfigError(self.context.describe(last, self.model))

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

    async def _finish(self, ctx: TaskContext, operator: str, messages: Messages,
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
        previous = strip_reasoning(samples[0].text)

        def repair(level: int) -> Messages:
            return [*messages, {"role": "assistant", "content": previous[:PREVIOUS[level]]},
                    {"role": "user", "content": REPAIR.format(error=errors[0])}]

        try:
            fixed = (await self.ask(ctx, f"{operator}:repair", repair, 1, seed))[1][0]
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

    def _builder(self, template: str, ctx: TaskContext, parents: dict[str, Feedback] | None = None,
                 **variables: Any) -> Callable[[int], Messages]:
        """Messages for `template` at a shrink level (`prompts.build_messages`)."""
        return lambda level: build_messages(self.prompts, template, ctx, level, parents or {}, variables)

    async def _one(self, ctx: TaskContext, operator: str, build: Callable[[int], Messages], seed: int,
                   parents: tuple[str, ...]) -> Proposal:
        try:
            messages, samples = await self.ask(ctx, operator, build, max(1, self.cfg.n), seed)
        except TransportError as exc:
            self.stats["request_failed"] += 1
            return Proposal(None, operator, parents, error=f"LLM request failed: {exc}", meta={"model": self.model})
        return await self._finish(ctx, operator, messages, samples, seed, parents)

    # -- the Proposer protocol ---------------------------------------------------------------
    async def init(self, ctx: TaskContext, n: int, seed: int) -> list[Proposal]:
        """`n` fresh programs; requests of up to cfg.n samples each, distinct seeds."""
        build = self._builder("init", ctx)
        per = max(1, self.cfg.n)
        sizes = [min(per, n - i) for i in range(0, n, per)]

        async def batch(i: int, size: int) -> list[Proposal]:
            s = derive_seed(seed, 1000 + i)
            try:
                messages, samples = await self.ask(ctx, "init", build, size, s)
            except TransportError as exc:
                self.stats["request_failed"] += 1
                return [Proposal(None, "init", error=f"LLM request failed: {exc}", meta={"model": self.model})] * size
            return list(await asyncio.gather(*(self._finish(ctx, "init", messages, [smp], derive_seed(s, j), ())
                                               for j, smp in enumerate(samples))))

        parts = await asyncio.gather(*(batch(i, size) for i, size in enumerate(sizes)))
        return [p for part in parts for p in part][:n]

    async def mutate(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        build = self._builder("mutate", ctx, {"parent": parent})
        return await self._one(ctx, "mutate", build, seed, (parent.program_id,))

    async def crossover(self, ctx: TaskContext, a: Feedback, b: Feedback, seed: int) -> Proposal:
        build = self._builder("crossover", ctx, {"a": a, "b": b})
        return await self._one(ctx, "crossover", build, seed, (a.program_id, b.program_id))

    async def simplify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        build = self._builder("simplify", ctx, {"parent": parent})
        return await self._one(ctx, "simplify", build, seed, (parent.program_id,))

    async def densify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        build = self._builder("densify", ctx, {"parent": parent})
        return await self._one(ctx, "densify", build, seed, (parent.program_id,))

    async def shaping(self, ctx: TaskContext, parent: Feedback, trajectories: list[dict[str, Any]],
                      seed: int) -> Proposal:
        """GRACE's shaping step: a reward that rises along whole expert trajectories.

        `trajectories`: [{"states": [{field: value}, ...], "rewards": [float, ...], "return": float?}].
        """
        build = self._builder("shaping", ctx, {"parent": parent}, trajectories=trajectories)
        return await self._one(ctx, "shaping", build, seed, (parent.program_id,))

    async def label_goals(self, ctx: TaskContext, candidates: list[dict[str, Any]], seed: int) -> list[int]:
        """GRACE step 1: indices of `candidates` ([{"state": {...}}]) the LLM says solve the task."""
        found = await self._label(ctx, "label_goals", candidates, seed, ("GOALS", REPAIR_GOALS, "goals"))
        return [] if found is None else found

    async def label_policy(self, ctx: TaskContext, candidates: list[dict[str, Any]], seed: int) -> list[int] | None:
        """GRACE step 1 on policy data: indices of `candidates` (a trained policy's states with the
        best reward's value there) the LLM says look like the expert solving the task; None when
        no reply could be parsed (after one repair request)."""
        return await self._label(ctx, "label_policy", candidates, seed, ("EXPERT", REPAIR_POLICY, "policy_labels"))

    async def _label(self, ctx: TaskContext, operator: str, candidates: list[dict[str, Any]], seed: int,
                     how: tuple[str, str, str]) -> list[int] | None:
        """Ask `operator`'s template about the numbered `candidates`; the reply's `TAG: [...]` indices,
        one repair request when it has none, else None. `how`: (tag, repair request, stats prefix)."""
        tag, ask, stat = how
        try:
            messages, replies = await self.ask(ctx, operator, self._builder(operator, ctx, candidates=candidates),
                                               1, seed, program=False)
            found = parse_indices(replies[0].text, len(candidates), tag)
            if found is None:
                self.stats[f"{stat}_unparsed"] += 1
                again = repair(messages, replies[0].text, ask)
                reply = (await self.ask(ctx, f"{operator}:repair", again, 1, seed, program=False))[1][0]
                found = parse_indices(reply.text, len(candidates), tag)
        except TransportError:
            self.stats["request_failed"] += 1
            found = None
        if found is None:
            self.stats[f"{stat}_failed"] += 1
        return found
