"""VLLMProposer against a fake `vllm` module (no GPU or model needed)."""

from __future__ import annotations

import asyncio
import sys
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from grace.config import ConfigError, LLMConfig
from grace.search.archive import Archive
from tests.fake_openai import GOOD, NO_CODE, fenced
from tests.proposers.test_llm_proposer import ctx, parent


@dataclass
class SamplingParams:
    n: int = 1
    temperature: float = 1.0
    max_tokens: int = 16
    seed: int | None = None


@dataclass
class _Completion:
    text: str
    token_ids: list[int]


@dataclass
class _RequestOutput:
    prompt_token_ids: list[int]
    outputs: list[_Completion]


@dataclass
class FakeLLM:
    model: str
    replies: list[str] = field(default_factory=list)
    calls: list[tuple[list[Any], list[SamplingParams]]] = field(default_factory=list)

    def chat(self, conversations: list[Any], sampling_params: list[SamplingParams], use_tqdm: bool = True) -> list[Any]:
        self.calls.append((conversations, sampling_params))
        out = []
        for conv, sp in zip(conversations, sampling_params, strict=True):
            assert conv[0]["role"] == "system" and isinstance(sp, SamplingParams)
            texts = [self.replies.pop(0) if self.replies else fenced(GOOD) for _ in range(sp.n)]
            out.append(_RequestOutput(list(range(10)), [_Completion(t, list(range(5))) for t in texts]))
        return out


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    mod = types.ModuleType("vllm")
    made: list[FakeLLM] = []

    def llm(model: str) -> FakeLLM:
        made.append(FakeLLM(model))
        return made[-1]

    mod.LLM = llm  # type: ignore[attr-defined]
    mod.SamplingParams = SamplingParams  # type: ignore[attr-defined]
    mod.made = made  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", mod)
    return mod


def test_missing_vllm_is_one_clear_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "vllm", None)
    from grace.proposers.llm.vllm import VLLMProposer

    with pytest.raises(ConfigError, match=r"pip install 'grace\[vllm\]'"):
        VLLMProposer(LLMConfig(local_model="/models/x"))


def test_batches_concurrent_requests_and_records(fake_vllm: types.ModuleType, tmp_path: Path) -> None:
    from grace.proposers.llm.vllm import VLLMProposer

    archive = Archive(tmp_path / "a.sqlite")
    prop = VLLMProposer(LLMConfig(local_model="/models/tiny", n=2, max_tokens=64, temperature=0.5), recorder=archive)

    async def go() -> list[Any]:
        return await asyncio.gather(prop.init(ctx(), 4, seed=1), prop.mutate(ctx(), parent(), seed=2),
                                    prop.simplify(ctx(), parent(), seed=3))

    inits, m, s = asyncio.run(go())
    assert all(p.source for p in [*inits, m, s])
    llm = fake_vllm.made[0]
    assert llm.model == "/models/tiny" and len(llm.calls) == 1  # one batch of 4 requests
    params = llm.calls[0][1]
    assert len(params) == 4 and {p.n for p in params} == {2} and len({p.seed for p in params}) == 4
    assert params[0].max_tokens == 64 and params[0].temperature == 0.5
    rows = [dict(r) for r in archive.db.execute("SELECT * FROM calls")]
    assert len(rows) == 4 and all(r["prompt_tokens"] == 10 and r["completion_tokens"] == 10 for r in rows)
    assert prop.calls == 4 and prop.batches == [4]


def test_garbage_repair_shared_with_llm_proposer(fake_vllm: types.ModuleType, tmp_path: Path) -> None:
    from grace.proposers.llm.vllm import VLLMProposer

    archive = Archive(tmp_path / "a.sqlite")
    prop = VLLMProposer(LLMConfig(local_model="/models/tiny"), recorder=archive)
    prop.llm = FakeLLM("/models/tiny", replies=[NO_CODE, fenced(GOOD)])
    p = asyncio.run(prop.mutate(ctx(), parent(), seed=5))
    assert p.source is not None and p.meta["repaired"] and prop.stats["no_code"] == 1
    ops = [r[0] for r in archive.db.execute("SELECT operator FROM calls ORDER BY id")]
    assert ops == ["mutate", "mutate:repair"]
