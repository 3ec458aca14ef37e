"""best_reward.py: a run's best program with its provenance, written atomically."""

from __future__ import annotations

import os
from pathlib import Path

import grace
from grace.config import EvolveConfig
from grace.program import FLOOR_KEY, TERMINAL_KEY, RewardProgram
from grace.search import negatives as rundata
from grace.search import payment
from grace.search.archive import Archive, ProgramRow
from grace.search.shaping import Shaped, provenance
from grace.tasks import Task


def _floor_text(params: dict[str, float]) -> str:
    """How the file pays its terminal value: with its floor, or as a shift (no floor)."""
    if FLOOR_KEY in params:
        return f"floor {params[FLOOR_KEY]:.4g}"
    return "no floor: paid as a shift" if TERMINAL_KEY in params else "no floor"


def selection_line(archive: Archive, b: ProgramRow) -> dict[str, str]:
    """The provenance line of PPO in the loop (grace/search/ppo_select.py), when it chose `b`."""
    rec = archive.get_meta(f"ppo_select_r{b.round}")
    if not rec or rec.get("winner") != b.id:
        return {}
    like = next((c["expert_likeness"] for c in rec["candidates"] if c["row"] == b.id), None)
    picks = [c.get("pick", "dense" if c.get("dense") else "top") for c in rec["candidates"]]
    parts = [f"the top {picks.count('top')}"]
    if n := picks.count("heldout"):
        parts.append(f"{n} best by held-out fitness")
    if n := picks.count("dense"):
        parts.append(f"{n} dense version{'s' if n > 1 else ''}")
    pool = ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0]
    if n := len((rec.get("terms") or {}).get("tried") or []):
        pool += f", then {n} terms of its choice alone"
    why = rec.get("why", "the most expert-like policy")
    return {"selected by": (f"PPO in the loop over {pool}: {why} "
                            f"(expert-likeness {like if like is None else f'{like:.3f}'}; "
                            f"{rec['steps']} steps x {rec['seeds']} seeds, {rec['seconds']:.0f} s)")}


def write_best_file(run_dir: Path, archive: Archive, task: Task, cfg: EvolveConfig, b: ProgramRow,
                    fitness_line: str, shaped: Shaped | None = None) -> Path:
    """Write `run_dir/best_reward.py` (the fitted program, its provenance in the docstring);
    `shaped`: `b` with the potential learned from the demos (`fit.shaping`), written instead."""
    nan = float("nan")
    shaped = shaped if shaped is not None and shaped.row_id == b.id else None
    m = shaped.metrics if shaped else b.metrics
    program = RewardProgram(shaped.source if shaped else b.best_source)
    lineage = " <- ".join(r.program_id or "?" for r in archive.lineage(b.id, depth=8))
    prov = {
        "task": task.extra.get("toml", task.name),
        "demos": f"{cfg.demos} (sha256 {rundata.file_digest(cfg.demos)})",
        "fitness": fitness_line,
        "accuracy": f"{m.get('accuracy_train', nan):.3f} train, {m.get('accuracy_heldout', nan):.3f} held-out; "
                    f"AUC {m.get('auc_train', nan):.3f} train, {m.get('auc_heldout', nan):.3f} held-out",
        "episode returns": (f"expert episodes out-earn negative ones in {m.get('return_ranking_train', nan):.3f} "
                            f"of pairs train, {m.get('return_ranking_heldout', nan):.3f} held-out "
                            f"(discount {m.get('gamma', nan):.3g}; terminal value "
                            f"{program.params.get(TERMINAL_KEY, 0.0):.4g}, {_floor_text(program.params)})"),
        **selection_line(archive, b),
        **provenance(shaped if shaped is None or shaped.potential else None, archive.get_meta("shaping_final")),
        **payment.provenance(archive.get_meta(payment.META), b.id),
        "run": f"{run_dir} round {b.round} generation {b.generation} slot {b.slot}",
        "program": f"{b.program_id} ({b.operator} by {b.proposer})",
        "lineage": lineage,
        "grace": grace.__version__,
    }
    text = program.with_provenance(prov, summary=program.summary or f"{task.name} reward evolved by grace.").source
    path = run_dir / "best_reward.py"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
