"""End to end: `grace.evolve(proposer="llm")` against the fake OpenAI server, then an exact replay
from the reply cache with the server stopped."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tests.fake_openai import BROKEN, NO_CODE, FakeOpenAI, Reply, fenced, ok, status, thinking

pytest.importorskip("grace.sandbox.compile")
pytest.importorskip("grace.fitness.offline")

ROOT = Path(__file__).resolve().parents[2]
TERMS = [
    "1.0 - xp.abs(s_next.pole_angle) / p['k']",
    "-xp.abs(s_next.cart_position) * p['k']",
    "xp.exp(-xp.square(s_next.pole_angle) / p['k'])",
    "-xp.abs(s_next.pole_angular_velocity) * p['k']",
    "-xp.square(s_next.cart_velocity) * p['k']",
    "xp.cos(s_next.pole_angle) * p['k']",
]


def program(h: int) -> str:
    """A valid cartpole program chosen (structurally distinct) by the integer `h`."""
    i, j = h % len(TERMS), (h // len(TERMS)) % len(TERMS)
    terms = [TERMS[i]] if i == j else [TERMS[i], TERMS[j].replace("p['k']", "p['k2']")]
    params = {"k": 0.2} | ({"k2": 0.1} if i != j else {})
    body = " + ".join(f"({t})" for t in terms)
    return f'"""Cartpole reward {h}."""\n\nPARAMS = {params}\n\ndef reward(s, a, s_next, p):\n    return {body}\n'


class Script:
    """Deterministic replies from the request content; transient errors by request count."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, body: dict[str, Any]) -> Reply:
        self.count += 1
        if self.count % 7 == 3:
            return status(500)
        if self.count % 11 == 5:
            return status(429, retry_after=0.01)
        last = body["messages"][-1]["content"]
        h = int(hashlib.sha256(f"{body.get('seed')}|{last}".encode()).hexdigest(), 16)
        repair = "could not be used" in last
        if not repair and h % 5 == 0:
            return ok(NO_CODE)
        if not repair and h % 5 == 1:
            return ok(BROKEN)
        return ok(thinking(program(h // 5)) if h % 2 else fenced(program(h // 5)))


def run(out: Path, url: str, **llm: Any) -> Any:
    import grace.api
    from grace.config import EvolveConfig, LLMConfig

    cfg = EvolveConfig(
        task="cartpole", demos=str(ROOT / "demos" / "cartpole.npz"), out=str(out), report=False, seed=3,
        llm=LLMConfig(base_url=url, model="fake", retries=3, timeout=10.0, **llm),
    ).override({"search.generations": 2, "search.population": 4, "search.islands": 1, "proposer.kind": "llm",
                "sandbox.workers": 1, "data.random_negative_episodes": 4})
    return grace.api.evolve(cfg, progress=False)


def sources(db: Path) -> dict[tuple[int, int, int], str]:
    con = sqlite3.connect(db)
    try:
        return {(r, g, s): src for r, g, s, src in
                con.execute("SELECT round, generation, slot, source FROM programs ORDER BY round, generation, slot")}
    finally:
        con.close()


def test_evolve_with_llm_then_replay(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from grace.proposers.llm.openai_api import LLMProposer

    monkeypatch.setattr(LLMProposer, "backoff_base", 0.01)
    server = FakeOpenAI(handler=Script()).start()
    url = server.url
    try:
        result = run(tmp_path / "run1", url)
    finally:
        server.stop()
    assert (tmp_path / "run1" / "best_reward.py").is_file() and result.best is not None
    db = tmp_path / "run1" / "archive.sqlite"
    con = sqlite3.connect(db)
    rows = con.execute("SELECT key, operator, prompt, reply, error, cached FROM calls ORDER BY id").fetchall()
    con.close()
    # every request the server received is in the archive (failed attempts included)
    assert len(rows) == len(server.completions) > 12 and all(r[5] == 0 for r in rows)
    recorded = sorted(json.dumps(json.loads(r[2]), sort_keys=True) for r in rows)
    received = sorted(json.dumps(b["messages"], sort_keys=True) for b in server.completions)
    assert recorded == received
    assert any(r[4] and "500" in r[4] for r in rows) and any(r[1].endswith(":repair") for r in rows)
    first = sources(db)
    assert len(first) == 12

    # replay with the server stopped: same programs in every (round, generation, slot)
    run(tmp_path / "run2", url, cache_from=str(tmp_path / "run1"), replay_only=True)  # nothing listens there any more
    assert sources(tmp_path / "run2" / "archive.sqlite") == first
    assert (tmp_path / "run2" / "best_reward.py").read_text().split('"""')[2:] == \
        (tmp_path / "run1" / "best_reward.py").read_text().split('"""')[2:]
    con = sqlite3.connect(tmp_path / "run2" / "archive.sqlite")
    assert con.execute("SELECT COUNT(*) FROM calls WHERE cached=0").fetchone()[0] == 0
    con.close()
