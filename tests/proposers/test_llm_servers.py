"""Servers as they are (issue #15), against the fake server's single-slot, context-limit and
ignore-n modes: no timeout storm, exact call budgets, context errors shrunk or named in one line,
fewer choices than `n` filled with single requests."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from grace.config import ConfigError
from grace.proposers.base import BudgetExhausted, TaskContext
from grace.proposers.llm.cache import ReplayOnly
from grace.proposers.llm.openai_api import LLMProposer
from grace.proposers.llm.probe import probe_server_sync
from grace.search.archive import Archive
from tests.conftest import DEMOS, run_cli
from tests.fake_openai import GOOD, NO_CODE, FakeOpenAI, fenced, ok, status
from tests.proposers.test_llm_proposer import calls, ctx, make, parent


def rich_ctx() -> TaskContext:
    """A context with six expert and six negative example states, as a run's default."""
    base = ctx()
    shift = [{k: round(v + 0.013 * i, 4) for k, v in base.expert_states[0].items()} for i in range(6)]
    bad = [{k: round(v - 0.17 * i, 4) for k, v in base.negative_states[0].items()} for i in range(6)]
    return TaskContext(name=base.name, description=base.description, schema=base.schema, action=base.action,
                       kind=base.kind, expert_states=shift, negative_states=bad, stats=base.stats)


def variants(body: dict) -> object:
    """Distinct valid programs, chosen by the request's seed."""
    k = int(body.get("seed") or 0) % 97
    return ok(fenced(GOOD.replace("0.2}", f"0.{k + 2}}}").replace("upright = ", f"upright = {k}.0 + ")))


def test_single_slot_server_no_timeout_storm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A server generating one request at a time, each taking 0.4 s, with a 1 s timeout: four
    requests at once would wait in its queue and time out. grace sends one at a time (a local
    server that does not say its slots), so the timeout only ever runs while it is served."""
    server = FakeOpenAI(handler=lambda body: ok(fenced(GOOD), delay=0.4), slots=1).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=0, timeout=1.0)
        t0 = time.perf_counter()
        props = asyncio.run(prop.init(ctx(), 4, seed=1))
        elapsed = time.perf_counter() - t0
    finally:
        server.stop()
    assert all(p.source for p in props) and elapsed >= 1.6
    assert prop.slots == 1 and server.max_busy == 1 and prop.server["local"] is True
    assert prop.summary()["calls"] == prop.summary()["replies"] == 4 and prop.summary()["failed"] == 0
    assert len(calls(archive)) == 4 and archive.get_meta("llm_server")["kind"] == "unknown"


def test_too_many_requests_for_one_slot_time_out_once_and_are_not_resent(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The storm's recipe (concurrency 4 forced on a one-slot server): requests that wait too long
    fail once each; none is resent behind the queue, so calls = requests."""
    server = FakeOpenAI(handler=lambda body: ok(fenced(GOOD), delay=0.4), slots=1).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=4, timeout=0.7, retries=5)
        props = asyncio.run(prop.init(ctx(), 4, seed=1))
        received = len(server.completions)
    finally:
        server.stop()
    timeouts = prop.summary()["errors"].get("timeout", 0)
    assert timeouts >= 2 and sum(p.source is not None for p in props) == 4 - timeouts
    assert received == prop.calls == 4 and len(calls(archive)) == 4 and prop.stats["retries"] == 0


def test_advertised_slots_and_context_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(slots=2, context=8192, advertise=True).start()
    try:
        facts = probe_server_sync(server.url, "fake", "k")
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=0)
        asyncio.run(prop.mutate(ctx(), parent(), seed=1))
    finally:
        server.stop()
    assert facts == {"kind": "llama.cpp", "local": True, "slots": 2, "context_length": 8192, "grammar": True}
    assert prop.slots == 2 and prop.context.limit == 8192 and prop.grammar is not None
    # the grammar goes to the server with program requests, and is part of the request's key
    assert server.completions[0]["grammar"].startswith("root ::= ")
    assert archive.get_meta("llm_server")["slots"] == 2


def test_call_budget_is_never_exceeded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """max_calls=6 with 4 requests in flight and garbage replies (each slot wants a repair call):
    exactly 6 calls reach the server, then the budget stops the run with the counts."""
    server = FakeOpenAI(handler=lambda body: ok(NO_CODE, delay=0.05)).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=4, max_calls=6)
        with pytest.raises(BudgetExhausted, match=r"6 of max_calls=6: \d replies, 0 failed attempts(, \d in flight)?\)"):
            asyncio.run(prop.init(ctx(), 8, seed=1))
        time.sleep(0.2)
        received = len(server.completions)
    finally:
        server.stop()
    # requests still out when the budget stopped the run are recorded as cancelled, never lost
    assert prop.calls == len(calls(archive)) == 6 and received <= 6
    summary = prop.summary()
    assert summary["replies"] + summary["errors"].get("cancelled", 0) == 6 and summary["replies"] >= 3


def test_failed_attempts_count_against_the_budget_and_are_reported_apart(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(handler=lambda body: status(500)).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=3, max_calls=5, retries=10)
        with pytest.raises(BudgetExhausted, match=r"5 of max_calls=5: 0 replies"):
            asyncio.run(prop.init(ctx(), 3, seed=1))
        time.sleep(0.2)
    finally:
        server.stop()
    errors = prop.summary()["errors"]
    assert len(calls(archive)) == 5 >= len(server.completions) and errors["server"] + errors.get("cancelled", 0) == 5
    assert prop.summary()["failed"] == 5 and prop.summary()["replies"] == 0


def test_context_error_is_learned_and_the_prompt_shrunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2048-token server that does not say its context: the first request's 400 names the limit;
    the request goes again shrunk (never unchanged), and every later one fits."""
    server = FakeOpenAI(handler=variants, context=2048).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=0, max_tokens=1024)
        inits = asyncio.run(prop.init(rich_ctx(), 3, seed=1))
        mutated = asyncio.run(prop.mutate(rich_ctx(), parent(), seed=2))
    finally:
        server.stop()
    assert all(p.source for p in [*inits, mutated])
    rows = calls(archive)
    errors = [r["error"] for r in rows if r["error"]]
    assert len(errors) == 1 and "maximum context length is 2048" in errors[0] and prop.context.limit == 2048
    for body in server.completions[1:]:
        prompt = sum(len(m["content"]) for m in body["messages"]) // 4
        assert prompt + body["max_tokens"] <= 2048
    assert prop.summary()["errors"] == {"context": 1}
    assert archive.get_meta("llm_server")["context_length"] == 2048


def test_context_too_small_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(context=512).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, concurrency=0)
        with pytest.raises(ConfigError, match=r"LLM context too small: model 'fake' has a context of 512 tokens"):
            asyncio.run(prop.init(ctx(), 2, seed=1))
    finally:
        server.stop()
    assert len(server.completions) == 1  # one 400, then nothing more is sent


def test_fewer_choices_than_n_fall_back_to_single_requests(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    server = FakeOpenAI(handler=variants, ignore_n=True).start()
    try:
        prop, archive = make(server, tmp_path, monkeypatch, n=4, concurrency=1)
        props = asyncio.run(prop.init(ctx(), 4, seed=1))
        assert [b["n"] for b in server.completions] == [4, 1, 1, 1] and prop.stats["n_fallback"] == 1
        asyncio.run(prop.mutate(ctx(), parent(), seed=2))  # remembered: singles from now on
        assert [b["n"] for b in server.completions][4:] == [1, 1, 1, 1]
    finally:
        server.stop()
    assert len(props) == 4 and len({p.source for p in props}) == 4
    # replay: the short reply to n=4 plus the singles give the same programs with the server stopped
    archive2 = Archive(tmp_path / "replay" / "archive.sqlite")
    replay = LLMProposer(prop.cfg, recorder=archive2, cache=ReplayOnly(archive2, [archive]))
    assert [p.source for p in asyncio.run(replay.init(ctx(), 4, seed=1))] == [p.source for p in props]
    assert replay.calls == 0


def test_cli_context_too_small_exits_2_with_one_line(tmp_path: Path) -> None:
    server = FakeOpenAI(context=512).start()
    try:
        res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"),
                      "--out", str(tmp_path / "r"), "--proposer-kind", "llm", "--llm-base-url", server.url,
                      "--llm-model", "fake", "--search-generations", "1", "--search-population", "2",
                      "--search-islands", "1", "--llm-timeout", "30", "--llm-max-tokens", "300", "--quiet")
    finally:
        server.stop()
    assert res.returncode == 2, res.stdout + res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "LLM context too small" in lines[0] and "--n_ctx 8192" in lines[0]
    assert server.completions[0]["max_tokens"] == 300


def test_cli_run_on_a_single_slot_server_has_no_timeouts_and_reports_calls(tmp_path: Path) -> None:
    """The issue's run (cartpole, population 4, 1 island) against a one-slot server whose replies
    take 0.3 s, with a 1 s timeout: defaults send one request at a time; no call fails."""
    from tests.proposers.test_llm_e2e import program

    def handler(body: dict) -> object:
        return ok(fenced(program(int(body.get("seed") or 0))), delay=0.3)

    server = FakeOpenAI(handler=handler, slots=1).start()
    try:
        res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"),
                      "--out", str(tmp_path / "r"), "--proposer-kind", "llm", "--llm-base-url", server.url,
                      "--llm-model", "fake", "--search-generations", "1", "--search-population", "4",
                      "--search-islands", "1", "--llm-timeout", "1", "--llm-max-calls", "6",
                      "--sandbox-workers", "1", "--set", "data.random_negative_episodes=4", "--no-report", "--quiet")
        received = len(server.completions)
    finally:
        server.stop()
    assert res.returncode == 0, res.stdout + res.stderr
    assert server.max_busy == 1 and received == 6
    assert "LLM calls: 6 sent, 6 replies, 0 failed, 0 cached" in res.stdout
    assert "stopped: LLM call budget reached (6 of max_calls=6: 6 replies, 0 failed attempts)" in res.stdout
    shown = run_cli("show", str(tmp_path / "r"), "--no-code")
    assert "LLM calls: 6 sent, 6 replies, 0 failed" in shown.stdout


@pytest.mark.parametrize("answers,expected", [
    ({"/v1/models": {"data": [{"id": "m", "owned_by": "vllm", "max_model_len": 32768}]}},
     {"kind": "vllm", "context_length": 32768, "grammar": False}),
    ({"/v1/models": {"data": [{"id": "m", "owned_by": "me"}]}}, {"kind": "llama-cpp-python", "grammar": True}),
    ({"/props": {"total_slots": 4, "default_generation_settings": {"n_ctx": 16384}},
      "/v1/models": {"data": [{"id": "m", "owned_by": "llamacpp"}]}},
     {"kind": "llama.cpp", "slots": 4, "context_length": 16384, "grammar": True}),
    ({"/api/version": {"version": "0.9.0"}, "/v1/models": {"data": [{"id": "m", "owned_by": "library"}]}},
     {"kind": "ollama", "grammar": False}),
    ({}, {"kind": "unknown", "grammar": False}),
])
def test_probe_recognises_servers(monkeypatch: pytest.MonkeyPatch, answers: dict, expected: dict) -> None:
    import grace.proposers.llm.probe as probe

    monkeypatch.setattr(probe, "_get", lambda url, headers, timeout: answers.get(url.split(":8000")[1]))
    facts = probe.probe_server_sync("http://127.0.0.1:8000/v1", "m", "k")
    assert facts == expected | {"local": True}
    want = expected.get("slots") or {"vllm": 8}.get(expected["kind"], 1)
    assert probe.default_concurrency(facts) == want
    assert probe.default_concurrency(facts | {"local": False}) == (want if want != 1 else 4)
