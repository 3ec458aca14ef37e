"""grace evolve against a real model (SmolLM2-135M-Instruct served by llama-cpp-python, one
thread): the plumbing, not the quality. Runs only under `make test-llm` (marker `llm_real`,
excluded by default), which builds the server's venv (.venv-llm) first; the server's python can be
named with LLM_SERVER_PYTHON (a test-harness setting, not a grace one)."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from benchmarks.llm_real import N_CTX, evolve_args, find_gguf, free_port, measure, run_evolve, serve

pytestmark = [pytest.mark.llm_real, pytest.mark.timeout(1800)]  # ~40-120 s a call on one CPU thread
ROOT = Path(__file__).resolve().parents[2]
CALLS = 6


@pytest.fixture(scope="module")
def server_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    python = os.environ.get("LLM_SERVER_PYTHON", str(ROOT / ".venv-llm" / "bin" / "python"))
    if not Path(python).exists():
        pytest.fail(f"{python} does not exist: run `make test-llm` (it builds .venv-llm)")
    log = tmp_path_factory.mktemp("server") / "server.log"
    with serve(python, find_gguf(python), free_port(), log) as url:
        yield url


def test_real_model_run_records_every_call_within_budget(server_url: str, tmp_path: Path) -> None:
    out = tmp_path / "r"
    res, _ = run_evolve(evolve_args(server_url, out, "auto", CALLS, generations=2, seed=0))
    assert res.returncode == 0, res.stdout + res.stderr  # the --init seed is always scored
    assert "Traceback" not in res.stderr
    m = measure(out)
    # budgets exact: the run stops on the call budget, having sent exactly that many
    assert m["calls"] == CALLS and f"stopped: LLM call budget reached ({CALLS} of max_calls={CALLS}" in res.stdout
    assert f"LLM calls: {CALLS} sent, {m['replies']} replies, {m['failed']} failed" in res.stdout
    # calls recorded with tokens; every prompt fit the server's context
    assert m["replies"] >= 1 and m["prompt_tokens"] > 0 and m["completion_tokens"] > 0
    assert 0 < m["max_prompt_plus_completion"] <= N_CTX
    # the server was recognised, one request at a time, the grammar sent
    assert m["server"]["kind"] == "llama-cpp-python" and m["server"]["grammar"] is True
    # seeded with --init, later generations ask mutate / crossover / simplify
    assert {"mutate", "crossover", "simplify"} & {op.split(":")[0] for op in m["by_operator"]}
    # replies classified: every LLM proposal was decided (scored, invalid with a reason, duplicate),
    # or left pending by the budget stop for `grace evolve --resume` to score
    statuses: Counter[str] = Counter()
    for key, count in m["proposals"].items():
        statuses[key.split(":")[-1]] += count
    assert set(statuses) <= {"ok", "error", "invalid", "duplicate", "pending"} and statuses["pending"] <= 1
    assert m["valid_replies"] + sum(m["invalid_kinds"].values()) == m["reply_texts"] > 0
