"""PPO in the loop: the round's winner is chosen by what its reward teaches, not by offline fitness.

After a round's offline search, PPO trains on the top `ppo.select_top` distinct candidates in one
compile (`grace.fitness.ppo.run_ppo`; the batched trainer), and the winner is the candidate whose
trained policy visits the most expert-like states under the candidate-independent discriminator
(`grace.fitness.discriminator.ExpertSimilarity`, fitted on the round's data): IRL mode. A higher
expert-likeness wins only beyond the seed noise (search/ppo_verdict.py): within it, the leader and
the best offline-ranked candidate it does not beat train on `ppo.select_confirm` more seeds, and the
more reliably expert-like of the two wins (the higher mean minus two standard errors). The true
reward is recorded (for benchmarks and the report) and never read here. The decision is persisted
in the archive's meta (`ppo_select_r<round>`) before it is used, so a resumed run keeps it.

Beside the top: the best programs by held-out fitness that generalise better than every top one
(`ppo.select_heldout`; few demos make training fitness reward one demo's quirks) and the dense
versions of both (`ppo.select_dense`). Each record says which pick a candidate was.

After the choice, the loop tries each term of the winner alone (search/ppo_terms.py); a kept term
becomes the record's winner.

The blind rule (`_shaped_rerun`): when no candidate's policy reaches `IMITATION_FLOOR` of the
expert's own expert-likeness, PPO in the loop cannot tell them apart (terminating MountainCar: no
reward reaches the flag unaided in 200k steps, every policy scored 0), so every candidate trains
again with the potential learned from the demos for it and the choice is made on that. Shaping
leaves each candidate's optimal policy unchanged (Ng et al. 1999); the shaped candidates then
trained to -132 to -177 steps and scored 0.47-0.98, and the row went from 0.73 to 0.81 of the
expert's normalised return (benchmarks/results/quality9.md).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from functools import partial
from statistics import fmean
from typing import Any

import numpy as np

from grace.config import EvolveConfig
from grace.fitness.discriminator import ExpertSimilarity
from grace.fitness.metrics import rankdata
from grace.fitness.ppo import run_ppo
from grace.search.archive import Archive, ProgramRow
from grace.search.executor import Executor
from grace.search.ppo_verdict import IMITATION_FLOOR, leader_and_rival, seed_values, settle, stderr
from grace.search.select import order_key, penalised, truncate
from grace.tasks import Task
from grace.types import PPOJob, Transitions


def meta_key(rnd: int) -> str:
    return f"ppo_select_r{rnd}"


def enabled(cfg: EvolveConfig, task: Task) -> bool:
    """On when `ppo.select_top >= 2`, the task has a JAX env, and the fitness is offline (PPO
    fitnesses already train every candidate)."""
    return cfg.ppo.select_top >= 2 and task.make_jax_env is not None and cfg.fitness.kind == "offline"


async def train_and_score(task: Task, cfg: EvolveConfig, sources: list[str], data: Transitions,
                          seed: int, seeds: int | None = None) -> tuple[list[Any], float]:
    """PPO on each source in one compile (`ppo.select_steps`; `seeds`, default `ppo.seeds`), each
    policy scored by the candidate-independent discriminator fitted on `data` (`discriminator`);
    (results, seconds)."""
    job = PPOJob(tuple(sources), cfg.ppo.select_steps or cfg.ppo.steps, seeds or cfg.ppo.seeds, seed,
                 cfg.ppo.overrides(task.action.kind == "discrete"), score_states=discriminator(cfg, data, task))
    t0 = time.time()
    results = await asyncio.to_thread(partial(run_ppo, task, job, timeout=cfg.ppo.timeout))
    return results, time.time() - t0


def discriminator(cfg: EvolveConfig, data: Transitions, task: Task | None = None) -> ExpertSimilarity:
    """The candidate-independent discriminator a run scores policies with, fitted on `data`'s train
    expert states (`fitness.disc_max_ref` of them at most): with `task`, as `ExpertSimilarity.for_task`
    compares that task's policies (how episodes end on the demos' own env, over the experts' horizon
    on a fixed-horizon variant, every expert state on goal tasks); without, the positives alone."""
    if task is None:
        return ExpertSimilarity.from_data(data, seed=cfg.seed, max_ref=cfg.fitness.disc_max_ref)
    return ExpertSimilarity.for_task(data, goal=task.kind == "goal", same_env=task.demo_env is None,
                                     seed=cfg.seed, max_ref=cfg.fitness.disc_max_ref)


def dense_extras(archive: Archive, rnd: int, cfg: EvolveConfig, chosen: list[ProgramRow]) -> list[ProgramRow]:
    """The best dense versions the round's last generation proposed (operator "densify"; a dense
    version the search had already scored counts as that row) that are not already `chosen`, one per
    program densified (`ppo.select_dense` + `ppo.select_heldout`): PPO weighs them against the sharper
    originals."""
    made = {r.program_id for r in archive.programs(round=rnd, operator="densify") if r.status in ("ok", "duplicate")}
    made -= {r.program_id for r in chosen}
    pool = [r for r in archive.programs(round=rnd, status="ok") if r.program_id in made]
    return truncate(pool, cfg.ppo.select_dense + cfg.ppo.select_heldout)


def heldout_extras(rows: list[ProgramRow], cfg: EvolveConfig, chosen: list[ProgramRow]) -> list[ProgramRow]:
    """The best `ppo.select_heldout` distinct programs of `rows` by parsimony-penalised held-out
    fitness whose held-out fitness beats every `chosen` one's (none when nothing is held out)."""
    taken = {r.program_id for r in chosen}
    bar = max((r.heldout for r in chosen if r.heldout is not None and math.isfinite(r.heldout)), default=-math.inf)
    best: dict[str, tuple[float, ProgramRow]] = {}
    for r in rows:
        if r.status != "ok" or r.program_id in taken or r.heldout is None or not r.heldout > bar:
            continue
        key = penalised(r.heldout, r.size or 0, cfg.search.parsimony)
        if r.program_id not in best or key > best[r.program_id][0]:
            best[r.program_id] = (key, r)
    ranked = sorted(best.values(), key=lambda kr: (-kr[0], order_key(kr[1])))
    return [r for _, r in ranked[: cfg.ppo.select_heldout]]


async def candidates(archive: Archive, rnd: int, cfg: EvolveConfig, data: Transitions,
                     executor: Executor | None = None) -> tuple[list[ProgramRow], list[str]]:
    """The top candidates (`top`), then the `heldout_extras`, then the `dense_extras`; (rows, the
    pick of each: "top", "heldout" or "dense")."""
    rows = await top(archive, rnd, cfg, data, executor)
    held = heldout_extras(archive.programs(round=rnd, status="ok"), cfg, rows)
    dense = dense_extras(archive, rnd, cfg, rows + held)
    return rows + held + dense, ["top"] * len(rows) + ["heldout"] * len(held) + ["dense"] * len(dense)


async def top(archive: Archive, rnd: int, cfg: EvolveConfig, data: Transitions,
              executor: Executor | None = None) -> list[ProgramRow]:
    """The round's top-k distinct programs by (parsimony-penalised) offline score; with
    `ppo.select_similarity` < 1 (and an executor), greedily the best of the top 8k whose reward ranks
    a sample of the round's states unlike every one already chosen (rewards computed in the sandbox)."""
    k, limit = cfg.ppo.select_top, cfg.ppo.select_similarity
    rows = truncate(archive.programs(round=rnd, status="ok"), k if limit >= 1.0 or executor is None else 8 * k)
    if len(rows) <= k:
        return rows
    rng = np.random.default_rng(cfg.seed + rnd)
    idx = np.sort(rng.choice(len(data["s"]), size=min(512, len(data["s"])), replace=False))
    batch = {key: np.asarray(data[key])[idx] for key in ("s", "a", "s_next")}
    chosen: list[tuple[ProgramRow, np.ndarray]] = []
    for row in rows:
        r = await executor.rewards(row.best_source, batch)  # type: ignore[union-attr]
        if r is None or not np.all(np.isfinite(r)):
            continue
        ranks = rankdata(r)
        if all(_spearman(ranks, other) <= limit for _, other in chosen):
            chosen.append((row, ranks))
        if len(chosen) == k:
            break
    picked = {row.id for row, _ in chosen}
    # fewer different rankings than k: fill with the best remaining, in offline order
    return ([row for row, _ in chosen] + [r for r in rows if r.id not in picked])[:k]


Shaper = Callable[[str], Awaitable[str | None]]
"""A source with the potential learned from the demos for it, or None (search/shaping.py)."""


async def more_seeds(task: Task, cfg: EvolveConfig, sources: list[str], data: Transitions, seed: int
                     ) -> tuple[list[list[float]], float, int]:
    """`ppo.select_confirm` more seeds for each source (other seeds than the first run's, which used
    `seed`): (each source's per-seed likeness, seconds, env steps). What settles a comparison within
    the seed noise, here and in the shaping check."""
    results, seconds = await train_and_score(task, cfg, sources, data, seed + 15_485_863, cfg.ppo.select_confirm)
    return ([seed_values(r) or [] for r in results], seconds,
            int(sum(r.env_steps or 0 for r in results)) * cfg.ppo.select_confirm)


async def _confirm(task: Task, cfg: EvolveConfig, sources: list[str], data: Transitions, rnd: int,
                   leader: dict[str, Any], rival: dict[str, Any]) -> dict[str, Any]:
    """Train the leader and its rival (`sources`, by offline rank: what the first run trained) on
    `more_seeds` and add each seed's likeness to theirs (in place); the record of that run."""
    pair = [leader, rival]
    extra, seconds, env_steps = await more_seeds(task, cfg, [sources[c["offline_rank"]] for c in pair], data,
                                                 cfg.seed + 104_729 * (rnd + 1))
    for c, values in zip(pair, extra, strict=True):
        c["likeness_seeds"] = c["likeness_seeds"] + values
    return {"rows": [c["row"] for c in pair], "seeds": cfg.ppo.select_confirm, "seconds": seconds,
            "env_steps": env_steps}


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    if np.std(a) == 0 or np.std(b) == 0:
        return 1.0 if np.std(a) == np.std(b) else 0.0
    return float(np.corrcoef(a, b)[0, 1])


async def _shaped_rerun(task: Task, cfg: EvolveConfig, scored: list[dict[str, Any]], sources: list[str],
                        data: Transitions, seed: int, shaper: Shaper, expert: float) -> dict[str, Any] | None:
    """The blind rule: when no candidate's policy reached `IMITATION_FLOOR` of the expert's own
    expert-likeness, train each candidate again (same seeds) with the demos' potential for it and
    score them on that (in place: `likeness_seeds`, the unshaped ones kept as
    `likeness_seeds_unshaped`; `sources` gets the shaped sources, what a confirmation trains). The
    winner is still the unshaped program; the final shaping stage decides whether it keeps a
    potential. None when the choice was not blind or no candidate got a potential. `expert`: the
    held-out experts' own expert-likeness."""
    if any(s["likeness_seeds"] and fmean(s["likeness_seeds"]) >= IMITATION_FLOOR * expert for s in scored):
        return None
    shaped = [await shaper(src) for src in sources]
    todo = [i for i, src in enumerate(shaped) if src is not None]
    if not todo:
        return None
    results, seconds = await train_and_score(task, cfg, [shaped[i] for i in todo], data, seed)
    for s in scored:
        s["likeness_seeds_unshaped"], s["likeness_seeds"], s["shaped"] = s["likeness_seeds"], None, False
    for i, res in zip(todo, results, strict=True):
        scored[i] |= {"likeness_seeds": seed_values(res), "shaped": True, "true_return_shaped": res.true_return_mean}
        sources[i] = shaped[i]  # type: ignore[call-overload]
    return {"floor": IMITATION_FLOOR * expert, "shaped": len(todo), "seconds": seconds,
            "env_steps": int(sum(r.env_steps or 0 for r in results)) * cfg.ppo.seeds}


async def select(archive: Archive, task: Task, cfg: EvolveConfig, rnd: int, data: Transitions,
                 executor: Executor | None = None, shaper: Shaper | None = None) -> dict[str, Any] | None:
    """Train PPO on the round's top candidates and persist the choice; returns the record, or
    None when there is nothing to choose between. A record made after the same generation is
    reused (a resumed run keeps its choice; a run resumed with more generations chooses again).
    `shaper` (the demos' potential for a source): the blind rule (`_shaped_rerun`)."""
    last = archive.last_completed()
    after = [rnd, last[1] if last is not None and last[0] == rnd else -1]
    if (done := archive.get_meta(meta_key(rnd))) is not None and done.get("after") == after:
        return done
    rows, picks = await candidates(archive, rnd, cfg, data, executor)
    if len(rows) < 2:
        return None
    sources = [r.best_source for r in rows]
    results, seconds = await train_and_score(task, cfg, sources, data, cfg.seed + 104_729 * (rnd + 1))
    scored = []
    for rank, (row, pick, res) in enumerate(zip(rows, picks, results, strict=True)):
        seeds = seed_values(res)
        scored.append({"row": row.id, "program_id": row.program_id, "offline_rank": rank, "fitness": row.fitness,
                       "heldout": row.heldout, "pick": pick, "dense": pick == "dense",
                       "likeness_seeds": seeds, "error": res.error,
                       # recorded for benchmarks and the report; the choice never reads it
                       "true_return_mean": res.true_return_mean})
    env_steps = int(sum(r.env_steps or 0 for r in results)) * cfg.ppo.seeds
    disc = discriminator(cfg, data, task)
    expert = disc.reference_likeness(data)
    blind = None if shaper is None else await _shaped_rerun(task, cfg, scored, sources, data, cfg.seed + 104_729 * (rnd + 1),
                                                            shaper, expert)
    if blind is not None:
        env_steps += blind["env_steps"]
        seconds += blind["seconds"]
    leader, rival = leader_and_rival(scored)
    confirm = None
    n = cfg.ppo.select_confirm
    if leader is None:
        winner, why = scored[0], "no PPO run scored: the offline order"
    elif rival is None:
        winner, why = leader, "the most expert-like policy"
    else:
        if n > 0:
            confirm = await _confirm(task, cfg, sources, data, rnd, leader, rival)
            env_steps += confirm["env_steps"]
            seconds += confirm["seconds"]
        winner, why = settle(leader, rival, IMITATION_FLOOR * expert)
        why = f"{why}, after {n} more seeds" if n > 0 else why
    if blind is not None:
        why = f"no policy imitated unshaped, so compared with the demos' potential added: {why}"
    for s in scored:  # the record's likeness: over every seed trained (the confirmation's included)
        s["expert_likeness"] = fmean(s["likeness_seeds"]) if s["likeness_seeds"] else None
    record = {"round": rnd, "after": after, "winner": winner["row"], "winner_program": winner["program_id"],
              "why": why, "candidates": scored, "confirm": confirm, "steps": cfg.ppo.select_steps or cfg.ppo.steps,
              "compared_with": disc.describe(), "blind": blind,
              "seeds": cfg.ppo.seeds, "seconds": seconds, "env_steps": env_steps}
    archive.set_meta(meta_key(rnd), record)
    return record


def shown_rows(record: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """A selection record as `grace show` prints it: per candidate (program, offline rank and pick,
    fitness, expert-likeness with its standard error over seeds, chosen), then the term stage's
    (search/ppo_terms.py): the winner it started from on the stage's seeds and each term alone."""
    out = []
    for c in record["candidates"]:
        if c.get("pick") == "term":
            continue  # shown with the term stage
        pick = c.get("pick", "dense" if c.get("dense") else "top")
        rank = f"{c['offline_rank'] + 1}" + {"top": "", "dense": " (dense version)", "heldout": " (best held-out)"}[pick]
        out.append((c["program_id"], rank, f"{c['fitness']:.4f}", _likeness_cell(c.get("likeness_seeds")),
                    "yes" if c["row"] == record["winner"] else ""))
    stage = record.get("terms") or {}
    if stage.get("tried"):
        out.append((stage["from_program"], "the choice, again", "", _likeness_cell(stage.get("winner_seeds")), ""))
    for t in stage.get("tried") or []:
        out.append((t["program_id"], f"its term {t['term']} alone", f"{t['fitness']:.4f}",
                    _likeness_cell(t.get("likeness_seeds")), "yes" if t["row"] == record["winner"] else ""))
    return out


def _likeness_cell(seeds: list[float] | None) -> str:
    if not seeds:
        return "failed"
    return f"{fmean(seeds):.3f}" + (f" ± {stderr(seeds):.3f} ({len(seeds)} seeds)" if len(seeds) > 1 else "")
