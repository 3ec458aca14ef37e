"""vLLM in-process: batch generation from a local model (`--proposer vllm`, extra `vllm`).

Only the transport differs from `LLMProposer`: prompts, cache/replay, budgets, recording and
garbage handling come from `ChatProposer`. Requests that arrive while the model is busy (the
loop proposes many slots concurrently) are gathered into one `LLM.chat` batch, each with its
own `SamplingParams(n, temperature, max_tokens, seed)`. vLLM is imported lazily; the model is
loaded on first use, in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from grace.config import ConfigError, LLMConfig
from grace.proposers.base import CallRecorder
from grace.proposers.llm.cache import ReplyCache
from grace.proposers.llm.chat import ChatProposer, Sample, TransportError

MISSING = "--proposer vllm needs the `vllm` extra: pip install 'grace[vllm]'"


def import_vllm() -> Any:
    """The vllm module, or ConfigError with the install hint."""
    try:
        import vllm
    except ImportError:
        raise ConfigError(MISSING) from None
    return vllm


class VLLMProposer(ChatProposer):
    """An LLM proposer generating with `vllm.LLM(model=cfg.local_model)` in this process."""

    name = "vllm"
    takes_grammar = False
    batch_window = 0.02
    """Seconds to wait for more requests before starting a batch."""

    def __init__(self, cfg: LLMConfig, recorder: CallRecorder | None = None, llm: Any = None,
                 cache: ReplyCache | None = None,
                 open_source: Callable[[str], CallRecorder] | None = None) -> None:
        self._vllm = import_vllm()
        super().__init__(cfg, recorder, cache, open_source)
        self.model = cfg.local_model or cfg.model
        self.llm = llm
        self._pending: list[tuple[list[dict[str, str]], Any, asyncio.Future[Any]]] = []
        self._flusher: asyncio.Task[None] | None = None
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.batches: list[int] = []
        """Size of every batch sent to the model (for tests and tuning)."""

    def _load(self) -> Any:
        if self.llm is None:
            self.llm = self._vllm.LLM(model=self.model)
        return self.llm

    def _generate(self, conversations: list[list[dict[str, str]]], params: list[Any]) -> list[Any]:
        llm = self._load()
        if hasattr(llm, "chat"):
            return list(llm.chat(conversations, sampling_params=params, use_tqdm=False))
        tok = llm.get_tokenizer()
        prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
        return list(llm.generate(prompts, sampling_params=params, use_tqdm=False))

    async def _flush(self) -> None:
        await asyncio.sleep(self.batch_window)
        assert self._lock is not None
        async with self._lock:
            batch, self._pending = self._pending, []
            self._flusher = None
            if not batch:
                return
            self.batches.append(len(batch))
            try:
                outs = await asyncio.to_thread(self._generate, [b[0] for b in batch], [b[1] for b in batch])
                if len(outs) != len(batch):
                    raise RuntimeError(f"vLLM returned {len(outs)} outputs for {len(batch)} prompts")
            except Exception as exc:  # noqa: BLE001 - every waiter gets the failure
                for _, _, fut in batch:
                    if not fut.done():
                        fut.set_exception(TransportError(f"vLLM generation failed: {type(exc).__name__}: {exc}"))
                return
            for (_, _, fut), out in zip(batch, outs, strict=True):
                if not fut.done():
                    fut.set_result(out)

    async def _request(self, operator: str, messages: list[dict[str, str]], params: dict[str, Any],
                       key: str) -> list[Sample]:
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._loop, self._lock, self._pending, self._flusher = loop, asyncio.Lock(), [], None
        self.admit()
        sampling = self._vllm.SamplingParams(n=params["n"], temperature=params["temperature"],
                                             max_tokens=params["max_tokens"], seed=params["seed"])
        fut: asyncio.Future[Any] = loop.create_future()
        self._pending.append((messages, sampling, fut))
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
        t0 = time.perf_counter()
        try:
            out = await fut
        except TransportError as exc:
            self.record(key=key, operator=operator, messages=messages, reply=None,
                        latency=time.perf_counter() - t0, error=str(exc))
            raise
        texts = [o.text for o in out.outputs]
        pt = len(getattr(out, "prompt_token_ids", None) or [])
        ct = sum(len(getattr(o, "token_ids", None) or []) for o in out.outputs)
        self.record(key=key, operator=operator, messages=messages, reply=texts, prompt_tokens=pt,
                    completion_tokens=ct, latency=time.perf_counter() - t0)
        share = max(1, len(texts))
        return [Sample(t, key, False, pt // share, ct // share) for t in texts]
