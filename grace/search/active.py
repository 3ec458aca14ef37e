"""GRACE's outer loop: PPO on the current best reward; its rollouts become fresh negatives (and,
before it, the adversarial probe's exploits: grace/search/probe.py; with `active.llm_labels`, less
the segments the LLM calls expert-like: grace/search/policy_labels.py).

Training runs in a jax-profile sandbox worker (spawned; RSS watchdog; reward code reaches JAX
only through the restricted compile), never in the main process.
"""

from __future__ import annotations

import asyncio
from functools import partial
from pathlib import Path
from typing import Any

from grace.config import ActiveConfig, EvolveConfig
from grace.data.trajectories import Trajectories
from grace.fitness.ppo import run_ppo
from grace.proposers.base import Proposer, TaskContext
from grace.search.archive import Archive, ProgramRow
from grace.search.executor import Executor
from grace.search.off_expert import off_expert_segments
from grace.search.ppo_select import discriminator
from grace.tasks import Task
from grace.types import PARTIAL_PREFIX, PPOJob, Transitions


async def collect_active_negatives(task: Task, source: str, cfg: EvolveConfig, rnd: int,
                                   data: Transitions | None = None) -> tuple[Trajectories, dict[str, Any]]:
    """Train PPO on `source`; return the trained policy's episodes and what the run measured."""
    ppo = cfg.ppo
    disc = discriminator(cfg, data, task) if data is not None else None
    job = PPOJob((source,), ppo.steps, ppo.seeds, cfg.seed + 7919 * rnd,
                 ppo.overrides(task.action.kind == "discrete"), score_states=disc, keep_trajectories=True)
    res = (await asyncio.to_thread(partial(run_ppo, task, job, timeout=ppo.timeout)))[0]
    if not res.ok or res.trajectories is None:
        raise RuntimeError(f"active negatives: PPO could not train on the best reward: {res.error}")
    traj = res.trajectories
    rollout_steps, threshold = traj.n_transitions, None
    if disc is not None and cfg.active.off_expert:
        kept, threshold = off_expert_segments(traj, disc, data, cfg.active.off_expert_quantile)
        traj = kept if kept is not None else traj  # never None: it keeps one state
    reference = disc.heldout_likeness(data) if disc is not None and data is not None else None
    info = {
        "env_steps": int(res.env_steps) * ppo.seeds, "episodes": traj.n_episodes,
        "rollout_transitions": rollout_steps, "kept_transitions": traj.n_transitions,
        "off_expert_threshold": threshold,
        "policy_expert_likeness": res.irl_score, "heldout_expert_likeness": reference,
        # true return: recorded for benchmarks and the report only; the search never reads it
        "true_return_mean": res.true_return_mean, "success_rate": res.success_rate,
    }
    return traj, info


async def round_negatives(archive: Archive, run_dir: Path, task: Task, cfg: EvolveConfig, rnd: int, best: ProgramRow,
                          data: Transitions | None, demos: Trajectories, executor: Executor, note: Any = None,
                          labeller: tuple[Proposer, TaskContext] | None = None) -> None:
    """The negatives of round `rnd` (version `rnd`) from the best reward so far: first the
    adversarial probe's exploits (`active.probe`, grace/search/probe.py; saved beside and listed in
    the set's info as `extra_sets`), then PPO's rollouts, without the segments the proposer of
    `labeller` (proposer, context) calls expert-like when `active.llm_labels` is on
    (grace/search/policy_labels.py). `note(line)`: progress lines."""
    from grace.search import probe

    say = note or (lambda line: None)
    extra, probe_info = [], None
    if probe.enabled(cfg, task) and data is not None:
        found, probe_info = await probe.probe_round(task, best.best_source, cfg, rnd, data, demos, executor)
        say(probe.summary(probe_info))
        if found is not None:
            path = found.save(run_dir / "negatives" / f"probe-round{rnd}.npz")
            extra.append({"source": f"{PARTIAL_PREFIX}r{rnd}", "path": str(path.relative_to(run_dir)),
                          "episodes": found.n_episodes, "transitions": found.n_transitions})
    traj, info = await collect_active_negatives(task, best.best_source, cfg, rnd, data)
    if cfg.active.llm_labels and labeller is not None:
        from grace.search.policy_labels import label_round

        traj, info["policy_labels"] = await label_round(archive, task, cfg, rnd, best.best_source, traj, *labeller,
                                                        executor, say)
    info |= {"needs_shaping": needs_shaping(best.fitness, info, cfg.active), "best_program": best.program_id,
             "probe": probe_info, "extra_sets": extra}
    say(f"active negatives: PPO on the best reward, {traj.n_episodes} episodes ({traj.n_transitions} transitions)")
    path = traj.save(run_dir / "negatives" / f"ppo-round{rnd}.npz")
    archive.add_negatives(rnd, str(path.relative_to(run_dir)), f"ppo-r{rnd}", traj.n_episodes,
                          int(info.get("env_steps", 0)), info)


def needs_shaping(best_fitness: float | None, info: dict[str, Any], active: ActiveConfig | None = None) -> bool:
    """GRACE step 7: offline fitness is high (>= active.shaping_min_fitness) but the PPO policy
    on the best reward is not expert-like (below active.shaping_ratio of the held-out experts, by
    the fixed discriminator, never the true reward)."""
    active = active or ActiveConfig()
    policy, reference = info.get("policy_expert_likeness"), info.get("heldout_expert_likeness")
    if best_fitness is None or policy is None or not reference:
        return False
    return best_fitness >= active.shaping_min_fitness and policy < active.shaping_ratio * reference
