"""`grace evolve --proposer llm --llm-base-url http://127.0.0.1:PORT/v1` from the command line."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.conftest import DEMOS, run_cli
from tests.fake_openai import FakeOpenAI
from tests.proposers.test_llm_e2e import Script


def test_cli_llm_run_records_every_call_and_hides_the_key(tmp_path: Path) -> None:
    server = FakeOpenAI(handler=Script()).start()
    try:
        res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"),
                      "--out", str(tmp_path / "r"), "--proposer", "llm", "--llm-base-url", server.url,
                      "--llm-model", "fake", "--generations", "1", "--population", "3", "--islands", "1",
                      "--quiet", env={"OPENAI_API_KEY": "sk-test-secret-123"})
        received = len(server.completions)
    finally:
        server.stop()
    assert res.returncode == 0, res.stderr
    assert "best reward:" in res.stdout
    db = sqlite3.connect(tmp_path / "r" / "archive.sqlite")
    recorded = db.execute("SELECT COUNT(*) FROM calls WHERE cached=0").fetchone()[0]
    assert recorded == received > 0
    dump = "\n".join(db.iterdump())
    assert "sk-test-secret-123" not in dump
    for f in (tmp_path / "r").rglob("*"):
        if f.is_file():
            assert b"sk-test-secret-123" not in f.read_bytes(), f
