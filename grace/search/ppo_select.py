"""PPO in the loop: the round's winner is chosen by what its reward teaches, not by offline fitness.

After a round's offline search, PPO trains on the top `ppo.select_top` distinct candidates in one
compile (`grace.fitness.ppo.run_ppo`; the batched trainer), and the winner is the candidate whose
trained policy visits the most expert-like states under the candidate-independent discriminator
(`grace.fitness.discriminator.ExpertSimilarity`, fitted on the round's data): IRL mode. The true
reward is recorded (for benchmarks and the report) and never read here. The decision is persisted
in the archive's meta (`ppo_select_r<round>`) before it is used, so a resumed run keeps it.
"""

from __future__ import annotations

import asyncio
import math
import time
from functools import partial
from typing import Any

from grace.config import EvolveConfig
from grace.fitness.discriminator import ExpertSimilarity
from grace.fitness.ppo import run_ppo
from grace.search.archive import Archive, ProgramRow
from grace.search.select import truncate
from grace.tasks import Task
from grace.types import PPOJob, Transitions


def meta_key(rnd: int) -> str:
    return f"ppo_select_r{rnd}"


def enabled(cfg: EvolveConfig, task: Task) -> bool:
    """On when `ppo.select_top >= 2`, the task has a JAX env, and the fitness is offline (PPO
    fitnesses already train every candidate)."""
    return cfg.ppo.select_top >= 2 and task.make_jax_env is not None and cfg.fitness.kind == "offline"


async def train_and_score(task: Task, cfg: EvolveConfig, sources: list[str], data: Transitions,
                          seed: int) -> tuple[list[Any], float]:
    """PPO on each source in one compile (`ppo.select_steps`, `ppo.seeds`), each policy scored by the
    candidate-independent discriminator fitted on `data`; (results, seconds)."""
    disc = ExpertSimilarity.from_data(data, seed=cfg.seed, max_ref=cfg.fitness.disc_max_ref)
    job = PPOJob(tuple(sources), cfg.ppo.select_steps or cfg.ppo.steps, cfg.ppo.seeds, seed,
                 cfg.ppo.overrides(task.action.kind == "discrete"), score_states=disc)
    t0 = time.time()
    results = await asyncio.to_thread(partial(run_ppo, task, job, timeout=cfg.ppo.timeout))
    return results, time.time() - t0


def likeness(result: Any) -> float | None:
    """A trained policy's expert-likeness (None when PPO failed or gave no finite score)."""
    ok = result.ok and result.irl_score is not None and math.isfinite(result.irl_score)
    return float(result.irl_score) if ok else None


def candidates(archive: Archive, rnd: int, k: int) -> list[ProgramRow]:
    """The round's top-k distinct programs by (parsimony-penalised) offline score."""
    return truncate(archive.programs(round=rnd, status="ok"), k)


async def select(archive: Archive, task: Task, cfg: EvolveConfig, rnd: int, data: Transitions) -> dict[str, Any] | None:
    """Train PPO on the round's top candidates and persist the choice; returns the record, or
    None when there is nothing to choose between. A record made after the same generation is
    reused (a resumed run keeps its choice; a run resumed with more generations chooses again)."""
    last = archive.last_completed()
    after = [rnd, last[1] if last is not None and last[0] == rnd else -1]
    if (done := archive.get_meta(meta_key(rnd))) is not None and done.get("after") == after:
        return done
    rows = candidates(archive, rnd, cfg.ppo.select_top)
    if len(rows) < 2:
        return None
    results, seconds = await train_and_score(task, cfg, [r.best_source for r in rows], data,
                                             cfg.seed + 104_729 * (rnd + 1))
    scored = []
    for rank, (row, res) in enumerate(zip(rows, results, strict=True)):
        like = likeness(res)
        scored.append({"row": row.id, "program_id": row.program_id, "offline_rank": rank, "fitness": row.fitness,
                       "expert_likeness": like, "error": res.error,
                       # recorded for benchmarks and the report; the choice never reads it
                       "true_return_mean": res.true_return_mean})
    ok = [s for s in scored if s["expert_likeness"] is not None]
    if not ok:
        winner = scored[0]  # PPO could not train any: keep the offline order
    else:  # most expert-like policy; ties keep the offline order
        winner = max(ok, key=lambda s: (s["expert_likeness"], -s["offline_rank"]))
    record = {"round": rnd, "after": after, "winner": winner["row"], "winner_program": winner["program_id"],
              "candidates": scored, "steps": cfg.ppo.select_steps or cfg.ppo.steps, "seeds": cfg.ppo.seeds,
              "seconds": seconds,
              "env_steps": int(sum(r.env_steps or 0 for r in results)) * cfg.ppo.seeds}
    archive.set_meta(meta_key(rnd), record)
    return record
