"""Simpler by PPO: does one of the winner's terms teach as well alone? (GRACE's simplify, judged by PPO)

Offline fitness keeps every term that separates the demos from the negatives, including terms that
never teach alone (a bump around the demos' cart position, a bonus for one action); added to a term
that does, they make a third of PPO's seeds fail. Measured on three fixed-horizon CartPole winners
(benchmarks/results/term_ablation/notes.md): each balanced on 13-15 of 20 seeds, its best term alone
on 20 of 20, and expert-likeness tells them apart (quality23's winner 0.68, lower bound 0.50, its
five failing seeds at 0.000; its pole-angle term alone 0.94, lower bound 0.91).

After PPO in the loop chose a round's winner (search/ppo_select.py), the loop scores each of its named
terms alone (`grace.program.keep_term`; an archive row, operator "term", parent the winner; at most
`ppo.select_terms`, best offline fitness first), and PPO trains the winner and those terms in one
compile on `ppo.seeds + ppo.select_confirm` fresh seeds, each policy scored by the same
candidate-independent discriminator. A term replaces the winner when its policies win PPO in the
loop's own comparison (`ppo_verdict.compare`, the winner as the rival: more expert-like beyond the
seed noise, or within it the only one that imitated, or more reliably expert-like); a tie keeps the
winner. The stage's record joins the round's selection record (`terms`) before it is used. Skipped
when the choice was blind (no policy imitated unshaped: the terms alone would be compared blind).
"""

from __future__ import annotations

import math
from functools import cache
from statistics import fmean
from typing import Any

from grace.config import EvolveConfig
from grace.program import ProgramError, keep_term, term_names
from grace.proposers.base import Proposal
from grace.search import ppo_select
from grace.search.archive import Archive, ProgramRow
from grace.search.ppo_select import discriminator, meta_key
from grace.search.ppo_verdict import IMITATION_FLOOR, compare, lower_bound, seed_values
from grace.tasks import Task
from grace.types import Transitions

SEED_OFFSET = 7_919_001
"""Added to the round's PPO seed: the stage's seeds are none of the selection's."""

_GROUNDS = {"noise": "more expert-like beyond the seed noise",
            "imitated": "the only one of the two whose policies imitated on some seed",
            "reliable": "within seed noise and more reliably expert-like (higher mean minus 2 standard errors)"}


def wanted(cfg: EvolveConfig, record: dict[str, Any] | None) -> bool:
    """Does the round's selection record still need the stage? (on, not blind, not done yet)"""
    return (cfg.ppo.select_terms > 0 and record is not None and record.get("blind") is None
            and "terms" not in record)


def proposals(winner: ProgramRow, schema: Any) -> tuple[list[Proposal], str]:
    """Each named term of `winner` alone (operator "term", parent the winner; a term that cannot be
    taken apart is an invalid proposal, recorded like any other); ([], why) when the winner has fewer
    than two named terms."""
    try:
        names = term_names(winner.best_source)
    except ProgramError as exc:
        return [], str(exc)
    if len(names) < 2:
        return [], "the winner has one term"
    out = []
    for name in names:
        try:
            out.append(Proposal(keep_term(winner.best_source, name, schema), "term", (winner.program_id,),
                                meta={"term": name}))
        except ProgramError as exc:
            out.append(Proposal(None, "term", (winner.program_id,), error=str(exc), meta={"term": name}))
    return out, ""


def pick_terms(rows: list[ProgramRow], limit: int) -> list[ProgramRow]:
    """The scored term rows to train: one per program, best offline fitness first, at most `limit`."""
    scored = [r for r in rows if r.status in ("ok", "duplicate") and r.fitness is not None]
    scored.sort(key=lambda r: r.fitness if math.isfinite(r.fitness) else -math.inf, reverse=True)  # type: ignore[arg-type]
    out: list[ProgramRow] = []
    for r in scored:
        if all(o.program_id != r.program_id for o in out):
            out.append(r)
    return out[:limit]


async def simplify(archive: Archive, task: Task, cfg: EvolveConfig, rnd: int, data: Transitions,
                   record: dict[str, Any], winner: ProgramRow, terms: list[ProgramRow],
                   skipped: str = "") -> dict[str, Any]:
    """Train the round's `winner` and its `terms` (term rows, `pick_terms`) and keep a term when it
    wins (module docstring); the updated selection record, persisted. `skipped`: why the winner has
    no terms to try (the stage records it and trains nothing)."""
    stage: dict[str, Any] = {"from": winner.id, "from_program": winner.program_id, "kept": None}
    if skipped or not terms:
        stage["skipped"] = skipped or "no term of the winner scored offline"
        record["terms"] = stage
        archive.set_meta(meta_key(rnd), record)
        return record
    n = cfg.ppo.seeds + cfg.ppo.select_confirm
    sources = [winner.best_source] + [t.best_source for t in terms]
    seed = cfg.seed + 104_729 * (rnd + 1) + SEED_OFFSET
    results, seconds = await ppo_select.train_and_score(task, cfg, sources, data, seed, n)
    base = seed_values(results[0])
    floor = cache(lambda: IMITATION_FLOOR * discriminator(cfg, data, task).reference_likeness(data))
    tried = []
    for row, res in zip(terms, results[1:], strict=True):
        vals = seed_values(res)
        entry: dict[str, Any] = {"row": row.id, "program_id": row.program_id, "term": row.meta.get("term"),
                                 "fitness": row.fitness, "likeness_seeds": vals, "error": res.error,
                                 "true_return_mean": res.true_return_mean}  # recorded, never read here
        if vals and base:
            won, ground = compare(vals, base, floor)
            entry |= {"wins": won, "ground": ground}
        tried.append(entry)
    env_steps = int(sum(r.env_steps or 0 for r in results)) * n
    stage |= {"seeds": n, "seconds": seconds, "env_steps": env_steps, "winner_seeds": base,
              "winner_true_return_mean": results[0].true_return_mean, "tried": tried}
    best = max((t for t in tried if t.get("wins")), key=lambda t: lower_bound(t["likeness_seeds"]), default=None)
    record["seconds"] += seconds
    record["env_steps"] += env_steps
    if best is not None:
        stage["kept"] = best["row"]
        record["why"] = (f"{record['why']}; then its term {best['term']} alone, {_GROUNDS[best['ground']]} "
                         f"on {n} more seeds")
        record["winner"], record["winner_program"] = best["row"], best["program_id"]
        record["candidates"].append({
            "row": best["row"], "program_id": best["program_id"], "offline_rank": len(record["candidates"]),
            "fitness": best["fitness"], "heldout": archive.program(best["row"]).heldout, "pick": "term",
            "dense": False, "likeness_seeds": best["likeness_seeds"], "error": None,
            "true_return_mean": best["true_return_mean"], "expert_likeness": fmean(best["likeness_seeds"])})
    record["terms"] = stage
    archive.set_meta(meta_key(rnd), record)
    return record
