"""Where a candidate's evaluation time goes, with the batched PARAMS search (issue 14's 10x).

One run's candidates (6 generations + init of the offline operator, fitting off, PPO in the loop
off: the programs the search writes, collected fast) are scored again in this process by
`grace.fitness.offline.evaluate` with grace's defaults (`FitSettings()`), one BLAS thread as in
the sandbox workers, after one warm-up pass. CPU time is split by wrapping the pieces:

- the fit (`params_batched.fit_candidates`): the calibration (`calibrate_many`), the reward calls
  (`BatchScorer._rewards`) and the rest (the search's own bookkeeping: caches, settings, steps);
  and by phase of the search: the initial PARAMS, the coordinate scan, the compass search, the
  centring and the answer's last score, with the settings and calls each phase scores;
- picking among the search's answer and its runners-up on whole train episodes (`offline._pick`);
- the rest of `evaluate`: the final reward call on all rows, the metrics, the terminal value and
  the episode-return ranking, the worst examples.

The programs are grace's own operator's, compiled by the sandbox's restricted compiler in this
process (as loop_speed.py's in-process refits). Writes benchmarks/results/fit_phases.md.

    python benchmarks/fit_phases.py
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as the sandbox workers; before numpy loads

import numpy as np  # noqa: E402

import grace.fitness.offline as offline  # noqa: E402
import grace.fitness.params_batched as pb  # noqa: E402
from grace.config import FitSettings  # noqa: E402
from grace.program import RewardProgram  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PHASES = ("initial", "scan", "compass", "centre", "answer")


class Clock:
    """CPU seconds per wrapped piece, and per search phase: settings scored, calls, seconds."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.phase = "initial"
        self.by_phase = {p: [0, 0, 0.0] for p in PHASES}

    def wrap(self, owner: Any, name: str, key: str, then: str | None = None) -> Callable[[], None]:
        """Time `owner.name` under `key` (its phase becomes `then` after it returns); returns undo."""
        fn = getattr(owner, name)
        clock = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if key in PHASES:
                clock.phase = key
            t0 = time.process_time()
            try:
                return fn(*args, **kwargs)
            finally:
                clock.seconds[key] = clock.seconds.get(key, 0.0) + time.process_time() - t0
                if then:
                    clock.phase = then

        setattr(owner, name, timed)
        return lambda: setattr(owner, name, fn)


def measure(task_name: str, sources: list[str]) -> dict[str, Any]:
    from loop_speed import offline_data  # benchmarks/, next to this script

    from grace.sandbox.compile import CompiledReward

    task, data = offline_data(task_name)
    compiled = [(CompiledReward(src, task.schema), RewardProgram(src).params) for src in sources]

    def one_pass() -> float:
        t0 = time.process_time()
        for c, params in compiled:
            try:
                offline.evaluate(c, data, params, FitSettings(), task.schema, seed=0)
            except Exception:  # noqa: BLE001 - a program that fails costs what it cost
                pass
        return time.process_time() - t0

    one_pass()  # warm-up: imports, caches
    clock = Clock()
    call = pb.BatchScorer.__call__

    def scored(self: pb.BatchScorer, u: np.ndarray) -> np.ndarray:
        before, t0 = self.count, time.process_time()
        out = call(self, u)
        rec = clock.by_phase[clock.phase]
        rec[0] += self.count - before
        rec[1] += 1
        rec[2] += time.process_time() - t0
        return out

    first = pb.BatchScorer.first

    def first_timed(self: pb.BatchScorer) -> float:
        clock.phase = "initial"
        t0 = time.process_time()
        out = first(self)
        rec = clock.by_phase["initial"]
        rec[0] += 1
        rec[1] += 1
        rec[2] += time.process_time() - t0
        clock.phase = "scan"
        return out

    undo = [clock.wrap(pb, "calibrate_many", "calibration"), clock.wrap(pb.BatchScorer, "_rewards", "reward calls"),
            clock.wrap(offline, "fit_candidates", "fit"), clock.wrap(offline, "_pick", "pick"),
            clock.wrap(pb, "_compass", "compass", then="answer"), clock.wrap(pb, "_centre", "centre", then="answer")]
    pb.BatchScorer.__call__, pb.BatchScorer.first = scored, first_timed  # type: ignore[method-assign]
    try:
        total = one_pass()
    finally:
        pb.BatchScorer.__call__, pb.BatchScorer.first = call, first  # type: ignore[method-assign]
        for u in undo:
            u()
    return {"task": task_name, "programs": len(sources), "total": total, "seconds": clock.seconds,
            "phases": clock.by_phase}


def table(results: list[dict[str, Any]]) -> list[str]:
    lines = ["| task | programs | ms per program | fit: calibration | fit: reward calls | fit: the rest | "
             "pick among runners-up | rest of evaluate |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        n, s = r["programs"], r["seconds"]
        ms = {k: 1000 * v / n for k, v in s.items()}
        total = 1000 * r["total"] / n
        fit_rest = ms["fit"] - ms["calibration"] - ms["reward calls"]
        rest = total - ms["fit"] - ms["pick"]
        cells = [ms["calibration"], ms["reward calls"], fit_rest, ms["pick"], rest]
        lines.append(f"| {r['task']} | {n} | {total:.1f} | " + " | ".join(f"{c:.1f} ({c / total:.0%})" for c in cells) + " |")
    lines += ["", "| task | phase of the search | settings scored per program | reward calls per program | ms per program |",
              "|---|---|---|---|---|"]
    for r in results:
        n = r["programs"]
        for p in PHASES:
            settings, calls, sec = r["phases"][p]
            lines.append(f"| {r['task']} | {p} | {settings / n:.1f} | {calls / n:.1f} | {1000 * sec / n:.1f} |")
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/fit_phases.md"))
    args = ap.parse_args()
    from loop_speed import run  # benchmarks/, next to this script

    # one run's candidates, collected fast: loop_speed's run with fitting off (2 workers)
    results = [measure(task, run(task, 2, args.generations, "off")["sources"]) for task in ("cartpole", "mountaincar")]
    lines = [
        "# Where a candidate's evaluation time goes (batched PARAMS search)",
        "",
        f"`python benchmarks/fit_phases.py`: one run's candidates per task ({args.generations} generations + init, "
        "2 islands x 16, fitting off while collecting them) scored again by `offline.evaluate` with grace's defaults "
        "in one process (one BLAS thread, as the workers), after a warm-up pass; CPU ms per program, each piece "
        f"timed by a wrapper; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end. 'fit: the "
        "rest' = the search's own bookkeeping (caches, settings, steps); 'pick among runners-up' = scoring the "
        "search's answer, its runners-up and the initial PARAMS on whole train episodes; 'rest of evaluate' = the "
        "final reward call on all rows, metrics, terminal value, return ranking, worst examples. A phase's ms "
        "include its calibration and reward calls; 'answer' is the found setting's last score.",
        "",
        *table(results),
        "",
    ]
    Path(args.out).write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
