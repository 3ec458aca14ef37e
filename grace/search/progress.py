"""Rich progress display for a run: generation, best fitness, evaluations/s, errors."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


class RunProgress:
    def __init__(self, total: int, console: Console | None = None, enabled: bool = True) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("[bold]evolve[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TextColumn("{task.description}"), console=self.console, disable=not enabled,
            refresh_per_second=4,
        )
        self.task_id = self.progress.add_task("", total=total)
        self.t0 = time.time()

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.stop()

    def advance(self, evo: Any) -> None:
        st = evo.stats
        rate = st.evaluated / max(time.time() - self.t0, 1e-9)
        best = evo.best.fitness if evo.best is not None and evo.best.fitness is not None else float("nan")
        calls = getattr(evo.proposer, "calls", None)
        extra = f" llm calls {calls}" if calls is not None else ""
        self.progress.update(
            self.task_id, advance=1,
            description=f"best {best:.4f}  {rate:.1f} evals/s  errors {st.errors}  invalid {st.invalid}{extra}",
        )

    def note(self, line: str) -> None:
        """A line from a stage between generations (the probe, active negatives)."""
        if self.enabled:
            self.console.print(f"[dim]{line}[/]")
