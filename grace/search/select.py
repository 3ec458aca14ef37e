"""Selection: parsimony-penalised scores, softmax parents, per-island truncation, migration.

All choices are made at generation boundaries from a seeded rng, so a run replayed from the
reply cache takes the same decisions whatever order evaluations finished in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from grace.search.archive import ProgramRow


def penalised(fitness: float, size: int, parsimony: float) -> float:
    """Selection score: fitness minus a per-AST-node penalty (readability is the product)."""
    return float(fitness) - parsimony * float(size)


def order_key(r: ProgramRow) -> tuple[int, int, int]:
    """Where a program was proposed: (round, generation, slot). Ties are broken by this, never by
    the row id, whose order depends on when rows were stored (a resumed run stores the rest of an
    interrupted generation later, so ids differ from an uninterrupted run's)."""
    return (r.round, r.generation, r.slot)


def truncate(rows: list[ProgramRow], n: int) -> list[ProgramRow]:
    """The top-n distinct programs by score (ties: older first)."""
    best: dict[str, ProgramRow] = {}
    for r in rows:
        if r.status != "ok" or r.score is None:
            continue
        cur = best.get(r.program_id)
        if cur is None or (r.score > (cur.score or -np.inf)) or (r.score == cur.score and order_key(r) < order_key(cur)):
            best[r.program_id] = r
    return sorted(best.values(), key=lambda r: (-(r.score or 0.0), order_key(r)))[:n]


def softmax_pick(rows: list[ProgramRow], temperature: float, rng: np.random.Generator, k: int = 1) -> list[ProgramRow]:
    """k distinct parents (if possible), sampled with p ~ exp(score / temperature)."""
    if not rows:
        return []
    scores = np.array([r.score or 0.0 for r in rows], dtype=float)
    logits = (scores - scores.max()) / max(temperature, 1e-9)
    p = np.exp(logits)
    p /= p.sum()
    idx = rng.choice(len(rows), size=min(k, len(rows)), replace=False, p=p)
    return [rows[i] for i in idx]


def migrate(pop: dict[int, list[ProgramRow]], n_keep: int) -> dict[int, list[ProgramRow]]:
    """Ring migration: each island's best joins the next island (replacing its worst)."""
    islands = sorted(pop)
    if len(islands) < 2:
        return pop
    out = {i: list(pop[i]) for i in islands}
    for i, isl in enumerate(islands):
        if not pop[isl]:
            continue
        dest = islands[(i + 1) % len(islands)]
        out[dest] = truncate([*out[dest], pop[isl][0]], n_keep)
    return out


@dataclass(frozen=True)
class SlotPlan:
    slot: int
    island: int
    operator: str
    parents: tuple[ProgramRow, ...]


def plan_generation(pop: dict[int, list[ProgramRow]], per_island: int, temperature: float,
                    crossover_rate: float, simplify_rate: float, rng: np.random.Generator) -> list[SlotPlan]:
    """Operators and parents of every slot of the next generation."""
    plans: list[SlotPlan] = []
    slot = 0
    for isl in sorted(pop):
        members = pop[isl]
        for _ in range(per_island):
            u = rng.random()
            if not members:
                op, parents = "init", []
            elif u < crossover_rate and len(members) >= 2:
                op, parents = "crossover", softmax_pick(members, temperature, rng, k=2)
            elif u < crossover_rate + simplify_rate:
                op, parents = "simplify", softmax_pick(members, temperature, rng)
            else:
                op, parents = "mutate", softmax_pick(members, temperature, rng)
            plans.append(SlotPlan(slot, isl, op, tuple(parents)))
            slot += 1
    return plans
