"""LLMProposer against a real local OpenAI-compatible HTTP server with scripted replies."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path

import pytest

from grace.config import ConfigError, LLMConfig
from grace.program import RewardProgram
from grace.proposers.base import BudgetExhausted, Feedback, TaskContext
from grace.proposers.llm.cache import ReplayMissing, ReplayOnly, ReplyCache, request_key
from grace.proposers.llm.labels import parse_goal_indices
from grace.proposers.llm.openai_api import LLMProposer
from grace.proposers.llm.prompts import TEMPLATES, PromptLibrary, builtin_prompts_dir
from grace.search.archive import Archive, open_reply_source
from grace.tasks import get_task
from tests.fake_openai import (
    BROKEN,
    GOOD,
    NO_CODE,
    WRONG_SIGNATURE,
    FakeOpenAI,
    fake_openai,
    fenced,
    ok,
    status,
    thinking,
)

__all__ = ["fake_openai"]  # the fixture, imported for pytest

SECRET = "sk-test-SECRET-abc123"


def ctx() -> TaskContext:
    task = get_task("cartpole")
    state = {"cart_position": 0.01, "cart_velocity": 0.1, "pole_angle": 0.02, "pole_angular_velocity": -0.1}
    bad = {"cart_position": 1.9, "cart_velocity": 1.5, "pole_angle": 0.19, "pole_angular_velocity": 2.0}
    stats = {"pole_angle": {"pos_mean": 0.0, "pos_std": 0.02, "pos_min": -0.05, "pos_max": 0.05,
                            "neg_mean": 0.01, "neg_std": 0.1, "neg_min": -0.2, "neg_max": 0.2}}
    return TaskContext(name=task.name, description=task.description, schema=task.schema, action=task.action,
                       kind=task.kind, expert_states=[state], negative_states=[bad], stats=stats)


def parent(error: str | None = None) -> Feedback:
    worst = [{"label": "negative", "reward": 0.93, "state": {"pole_angle": 0.01, "cart_position": 2.3},
              "components": {"upright": 0.93}}]
    return Feedback(program=RewardProgram(GOOD), fitness=-0.41, metrics={"accuracy": 0.8, "auc": 0.85},
                    worst=worst, error=error, debug_output="angle mean 0.01", program_id="abc123")


def make(server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, archive: Archive | None = None,
         **cfg: object) -> tuple[LLMProposer, Archive]:
    monkeypatch.setenv("GRACE_TEST_KEY", SECRET)
    archive = archive or Archive(tmp_path / "archive.sqlite")
    settings = {"base_url": server.url, "model": "fake", "api_key_env": "GRACE_TEST_KEY", "timeout": 2.0,
                "retries": 3, "concurrency": 4} | cfg
    prop = LLMProposer(LLMConfig(**settings), recorder=archive)  # type: ignore[arg-type]
    prop.backoff_base, prop.backoff_cap = 0.01, 0.2
    return prop, archive


def calls(archive: Archive) -> list[dict]:
    return [dict(r) for r in archive.db.execute("SELECT * FROM calls ORDER BY id")]


def test_templates_render_with_strict_undefined(tmp_path: Path) -> None:
    lib = PromptLibrary()
    from grace.proposers.llm.prompts import context_vars, feedback_vars

    base = context_vars(ctx())
    p = feedback_vars(parent("boom"))
    extra = {"mutate": {"parent": p}, "crossover": {"a": p, "b": p}, "simplify": {"parent": p}, "densify": {"parent": p},
             "shaping": {"parent": p, "trajectories": [{"states": [{"pole_angle": 0.1}], "rewards": [0.5]}]},
             "label_goals": {"candidates": [{"state": {"pole_angle": 0.0}}]},
             "label_policy": {"candidates": [{"state": {"pole_angle": 0.0}, "episode": 0, "steps": [0, 4],
                                              "reward": 0.5, "mean_reward": None}]}}
    for name in TEMPLATES:
        text = lib.render(name, **base, **extra.get(name, {}))
        assert "{{" not in text and len(text) > 100
    mutate = lib.render("mutate", **base, parent=p)
    for needle in ("def reward", "-0.41", "accuracy 0.8", "[negative] reward 0.93", "boom", "angle mean 0.01",
                   "s.pole_angle"):
        assert needle in mutate
    assert "axis=-1" in lib.render("system", **base) and "linalg.norm" in lib.render("system", **base)
    with pytest.raises(ConfigError, match="parent"):
        lib.render("mutate", **base)
    # --prompts DIR overrides per file
    (tmp_path / "mutate.j2").write_text("MY MUTATE {{ parent.fitness }}")
    user = PromptLibrary(tmp_path)
    assert user.render("mutate", **base, parent=p).startswith("MY MUTATE -0.41")
    assert user.render("init", **base) == lib.render("init", **base)
    assert (builtin_prompts_dir() / "system.j2").is_file()


def test_operators_produce_valid_programs(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch)
    fake_openai.push(ok(fenced(GOOD)), ok(thinking(GOOD)))

    async def go():
        inits = await prop.init(ctx(), 2, seed=1)
        m = await prop.mutate(ctx(), parent(), seed=2)
        c = await prop.crossover(ctx(), parent(), parent(), seed=3)
        s = await prop.simplify(ctx(), parent(), seed=4)
        return inits, m, c, s

    inits, m, c, s = asyncio.run(go())
    for p in [*inits, m, c, s]:
        assert p.source is not None and p.error is None
        RewardProgram(p.source).validate(get_task("cartpole").schema)
        assert p.meta["calls"] and p.meta["model"] == "fake"
    assert m.parents == ("abc123",) and c.operator == "crossover" and s.operator == "simplify"
    assert prop.calls == 5 and prop.tokens > 0 and prop.stats["garbage"] == 0
    rows = calls(archive)
    assert len(rows) == 5 and all(r["error"] is None and r["prompt_tokens"] > 0 for r in rows)
    assert {r["operator"] for r in rows} == {"init", "mutate", "crossover", "simplify"}
    # distinct slots (seeds) never share a key; the seed goes to the server
    assert len({r["key"] for r in rows}) == 5
    assert len({b["seed"] for b in fake_openai.completions}) == 5
    # the mutate prompt carries the feedback
    mutate_prompt = json.loads(rows[2]["prompt"])[1]["content"]
    assert "[negative] reward 0.93" in mutate_prompt and "angle mean 0.01" in mutate_prompt


def test_api_key_is_bearer_and_never_recorded(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch)
    asyncio.run(prop.mutate(ctx(), parent(), seed=0))
    headers = {k.lower(): v for k, v in fake_openai.requests[0]["headers"].items()}
    assert headers["authorization"] == f"Bearer {SECRET}"
    dump = "".join(str(v) for r in calls(archive) for v in r.values())
    assert SECRET not in dump
    monkeypatch.delenv("GRACE_TEST_KEY")
    prop2, _ = make(fake_openai, tmp_path / "b", monkeypatch)
    monkeypatch.delenv("GRACE_TEST_KEY")
    asyncio.run(prop2.mutate(ctx(), parent(), seed=1))
    last = {k.lower(): v for k, v in fake_openai.requests[-1]["headers"].items()}
    assert last["authorization"] == "Bearer EMPTY"


def test_recovers_from_500_429_and_503(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch, timeout=0.5, retries=4)
    fake_openai.push(status(500), status(429, retry_after=0.05), status(503), ok(fenced(GOOD)))
    p = asyncio.run(prop.mutate(ctx(), parent(), seed=7))
    assert p.source is not None
    rows = calls(archive)
    assert len(rows) == 4 and len(fake_openai.completions) == 4
    errors = [r["error"] for r in rows]
    assert "500" in errors[0] and "429" in errors[1] and "503" in errors[2]
    assert errors[3] is None and rows[3]["reply"] and len({r["key"] for r in rows}) == 1
    assert prop.stats["retries"] == 3 and prop.calls == 4
    assert prop.summary()["replies"] == 1 and prop.summary()["failed"] == 3
    assert prop.summary()["errors"] == {"server": 2, "rate_limit": 1}


def test_a_timeout_on_a_local_server_is_abandoned_not_resent(fake_openai: FakeOpenAI, tmp_path: Path,
                                                             monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch, timeout=0.5, retries=4)
    fake_openai.push(ok(fenced(GOOD), delay=1.5))
    p = asyncio.run(prop.mutate(ctx(), parent(), seed=7))
    assert p.source is None and "abandoned, not resent" in (p.error or "") and "--llm-timeout" in (p.error or "")
    assert len(fake_openai.completions) == 1 and [r["error"][:15] for r in calls(archive)] == ["APITimeoutError"]
    assert prop.summary()["errors"] == {"timeout": 1} and prop.calls == 1


def test_retries_exhausted_is_a_failed_proposal_not_fatal(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch, retries=2)
    fake_openai.push(status(500), status(502), status(500))
    p = asyncio.run(prop.mutate(ctx(), parent(), seed=7))
    assert p.source is None and "500" in (p.error or "") and "3 attempt" in (p.error or "")
    assert len(calls(archive)) == 3 and prop.stats["request_failed"] == 1


def test_bad_key_or_model_is_a_clear_config_error(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, _ = make(fake_openai, tmp_path, monkeypatch)
    fake_openai.push(status(404, error="model 'fake' does not exist"))
    with pytest.raises(ConfigError, match="does not exist"):
        asyncio.run(prop.mutate(ctx(), parent(), seed=7))


@pytest.mark.parametrize("garbage,kind", [(NO_CODE, "no_code"), (BROKEN, "syntax"), (WRONG_SIGNATURE, "signature"),
                                          (fenced(GOOD.replace("pole_angle", "pole_tilt")), "invalid")])
def test_garbage_is_repaired_once(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch, garbage: str, kind: str) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch)
    fake_openai.push(ok(garbage), ok(thinking(GOOD)))
    p = asyncio.run(prop.mutate(ctx(), parent(), seed=3))
    assert p.source is not None and p.meta["repaired"] is True
    assert prop.stats["garbage"] == 1 and prop.stats[kind] == 1 and prop.stats["repaired"] == 1
    repair = fake_openai.completions[1]["messages"]
    assert repair[-2]["role"] == "assistant" and repair[-1]["role"] == "user"
    assert "could not be used" in repair[-1]["content"]
    assert [r["operator"] for r in calls(archive)] == ["mutate", "mutate:repair"]


def test_garbage_twice_is_a_counted_failure(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch)
    fake_openai.push(ok(NO_CODE), ok(BROKEN))
    p = asyncio.run(prop.crossover(ctx(), parent(), parent(), seed=3))
    assert p.source is None and "no reward program" in (p.error or "") and "syntax" in (p.error or "")
    assert prop.stats["failed"] == 1 and len(fake_openai.completions) == 2  # fed back ONCE
    assert len(calls(archive)) == 2


def test_n_samples_and_fallback_when_rejected(tmp_path: Path, monkeypatch) -> None:
    server = FakeOpenAI().start()
    try:
        prop, _ = make(server, tmp_path, monkeypatch, n=3)
        props = asyncio.run(prop.init(ctx(), 5, seed=1))
        assert len(props) == 5 and all(p.source for p in props)
        # two requests (n=3 and n=2) go out concurrently: they may reach the server in either order
        assert sorted(b["n"] for b in server.completions) == [2, 3]
    finally:
        server.stop()
    server = FakeOpenAI(reject_n=True).start()
    try:
        prop, archive = make(server, tmp_path / "b", monkeypatch, n=3)
        props = asyncio.run(prop.init(ctx(), 3, seed=1))
        assert len(props) == 3 and all(p.source for p in props)
        ns = [b["n"] for b in server.completions]
        assert ns == [3, 1, 1, 1] and prop.stats["n_fallback"] == 1
        asyncio.run(prop.mutate(ctx(), parent(), seed=2))  # the fallback is remembered
        assert [b["n"] for b in server.completions][4:] == [1, 1, 1]
        rows = calls(archive)
        assert rows[0]["error"] and "400" in rows[0]["error"] and len(rows) == 7
    finally:
        server.stop()


def test_budgets_raise_budget_exhausted(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch, max_calls=2)
    asyncio.run(prop.mutate(ctx(), parent(), seed=1))
    asyncio.run(prop.mutate(ctx(), parent(), seed=2))
    with pytest.raises(BudgetExhausted, match="max_calls=2"):
        asyncio.run(prop.mutate(ctx(), parent(), seed=3))
    assert len(fake_openai.completions) == 2
    # a resumed run counts what the archive already spent
    prop2, _ = make(fake_openai, tmp_path, monkeypatch, archive=archive, max_calls=2)
    assert prop2.calls == 2
    with pytest.raises(BudgetExhausted):
        asyncio.run(prop2.mutate(ctx(), parent(), seed=4))
    prop3, _ = make(fake_openai, tmp_path / "t", monkeypatch, max_tokens_total=10)
    asyncio.run(prop3.mutate(ctx(), parent(), seed=1))
    with pytest.raises(BudgetExhausted, match="max_tokens_total=10"):
        asyncio.run(prop3.mutate(ctx(), parent(), seed=2))


def test_cache_and_replay_with_server_stopped(tmp_path: Path, monkeypatch) -> None:
    variants = [GOOD.replace("0.2}", f"0.{i + 2}}}").replace("upright = ", f"upright = {i}.0 + ") for i in range(9)]
    counter = {"i": 0}

    def handler(body: dict) -> object:
        counter["i"] += 1
        return ok(fenced(variants[counter["i"] % len(variants)]))

    server = FakeOpenAI(handler=handler).start()

    async def sequence(p: LLMProposer) -> list[str | None]:
        out = [x.source for x in await p.init(ctx(), 3, seed=5)]
        out.append((await p.mutate(ctx(), parent(), seed=6)).source)
        out.append((await p.crossover(ctx(), parent(), parent(), seed=7)).source)
        out.append((await p.simplify(ctx(), parent(), seed=8)).source)
        return out

    try:
        prop, archive = make(server, tmp_path / "run1", monkeypatch)
        first = asyncio.run(sequence(prop))
        # the same proposer again: served from its own archive, no new server calls
        n_before = len(server.completions)
        again = asyncio.run(sequence(prop))
        assert again == first and len(server.completions) == n_before
        assert sum(r["cached"] for r in calls(archive)) == 6
    finally:
        server.stop()
    assert len(set(first)) == 6
    # replay into a new archive with the server stopped
    archive2 = Archive(tmp_path / "run2" / "archive.sqlite")
    prop2 = LLMProposer(prop.cfg, recorder=archive2, cache=ReplayOnly(archive2, [Archive(tmp_path / "run1" / "archive.sqlite", create=False)]))
    assert asyncio.run(sequence(prop2)) == first
    assert prop2.calls == 0 and all(r["cached"] == 1 for r in calls(archive2)) and len(calls(archive2)) == 6
    with pytest.raises(ReplayMissing, match="no cached reply"):
        asyncio.run(prop2.mutate(ctx(), parent(), seed=999))
    # the config route used by grace.api.evolve (llm.cache_from, llm.replay_only)
    replay_cfg = dataclasses.replace(prop.cfg, cache_from=str(tmp_path / "run1"), replay_only=True)
    prop3 = LLMProposer(replay_cfg, recorder=Archive(tmp_path / "run3" / "archive.sqlite"),
                        open_source=open_reply_source)
    assert isinstance(prop3.cache, ReplyCache) and prop3.cache.replay_only
    assert asyncio.run(sequence(prop3)) == first
    # no environment variable overrides the config: the old ones do nothing
    monkeypatch.setenv("GRACE_LLM_CACHE", str(tmp_path / "run1"))
    monkeypatch.setenv("GRACE_LLM_REPLAY_ONLY", "1")
    prop4 = LLMProposer(prop.cfg, recorder=Archive(tmp_path / "run4" / "archive.sqlite"))
    assert not prop4.cache.replay_only and not prop4.cache.sources


def test_request_key_depends_on_everything() -> None:
    msgs = [{"role": "user", "content": "x"}]
    base = request_key("m", msgs, {"seed": 1, "n": 1, "temperature": 0.8})
    assert base == request_key("m", [dict(msgs[0])], {"temperature": 0.8, "n": 1, "seed": 1})
    assert base != request_key("m2", msgs, {"seed": 1, "n": 1, "temperature": 0.8})
    assert base != request_key("m", msgs, {"seed": 2, "n": 1, "temperature": 0.8})
    assert base != request_key("m", msgs, {"seed": 1, "n": 2, "temperature": 0.8})
    assert base != request_key("m", [{"role": "user", "content": "y"}], {"seed": 1, "n": 1, "temperature": 0.8})


def test_shaping_and_label_goals(fake_openai: FakeOpenAI, tmp_path: Path, monkeypatch) -> None:
    prop, archive = make(fake_openai, tmp_path, monkeypatch)
    trajs = [{"states": [{"pole_angle": 0.1}, {"pole_angle": 0.0}], "rewards": [0.2, 0.9], "return": 1.1}]
    fake_openai.push(ok(fenced(GOOD)))
    p = asyncio.run(prop.shaping(ctx(), parent(), trajs, seed=1))
    assert p.source is not None and p.operator == "shaping"
    assert "t=1 reward 0.9" in fake_openai.completions[0]["messages"][1]["content"]
    cands = [{"state": {"pole_angle": 0.0}}, {"state": {"pole_angle": 0.3}}, {"state": {"pole_angle": 0.01}}]
    fake_openai.push(ok("<think>[1]</think>State 0 and 2 are upright.\nGOALS: [0, 2, 7]"))
    assert asyncio.run(prop.label_goals(ctx(), cands, seed=2)) == [0, 2]
    fake_openai.push(ok("I cannot tell."), ok("GOALS: [1]"))
    assert asyncio.run(prop.label_goals(ctx(), cands, seed=3)) == [1]
    fake_openai.push(ok("no idea"), ok("still no idea"))
    assert asyncio.run(prop.label_goals(ctx(), cands, seed=4)) == []
    assert prop.stats["goals_failed"] == 1
    assert parse_goal_indices("goals = [ 2 ,1 ]", 3) == [1, 2] and parse_goal_indices("GOALS: []", 3) == []
    ops = [r["operator"] for r in calls(archive)]
    assert ops.count("label_goals:repair") == 2


def test_concurrency_is_bounded(tmp_path: Path, monkeypatch) -> None:
    server = FakeOpenAI(handler=lambda body: ok(fenced(GOOD), delay=0.2)).start()
    try:
        prop, _ = make(server, tmp_path, monkeypatch, concurrency=2)
        import time

        t0 = time.perf_counter()
        props = asyncio.run(prop.init(ctx(), 4, seed=1))
        elapsed = time.perf_counter() - t0
        assert all(p.source for p in props)
        assert elapsed >= 0.38  # 4 requests of 0.2 s, at most 2 at once
    finally:
        server.stop()
