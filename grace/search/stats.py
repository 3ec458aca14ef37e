"""What one evolution run counted and returned: the loop's statistics, the pipeline's overlap
accounting (does the proposer wait on evaluation?) and the run's result record."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from grace.search.archive import ProgramRow


class Overlap:
    """Wall-clock accounting of the pipeline: how long proposals and evaluations were in flight,
    alone or together (for the loop benchmark: does the proposer wait on evaluation?)."""

    def __init__(self) -> None:
        self.inflight = {"propose": 0, "eval": 0}
        self.seconds = {"propose_only": 0.0, "eval_only": 0.0, "both": 0.0, "idle": 0.0}
        self._t = time.perf_counter()

    def _tick(self) -> None:
        now = time.perf_counter()
        p, e = self.inflight["propose"] > 0, self.inflight["eval"] > 0
        key = "both" if p and e else "propose_only" if p else "eval_only" if e else "idle"
        self.seconds[key] += now - self._t
        self._t = now

    def enter(self, kind: str) -> None:
        self._tick()
        self.inflight[kind] += 1

    def leave(self, kind: str) -> None:
        self._tick()
        self.inflight[kind] -= 1


@dataclass
class RunStats:
    evaluated: int = 0
    errors: int = 0
    duplicates: int = 0
    duplicates_avoided: int = 0
    retried: int = 0
    """Evaluations retried once because their sandbox worker crashed (killed from outside)."""
    invalid: int = 0
    eval_seconds: float = 0.0
    propose_seconds: float = 0.0
    started: float = field(default_factory=time.time)
    stopped_because: str = ""
    overlap: Overlap = field(default_factory=Overlap)


@dataclass
class RunResult:
    run_dir: Path
    best: ProgramRow | None
    best_path: Path | None
    stats: RunStats
