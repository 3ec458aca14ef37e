"""Shaping in the loop: the episodes a shaping step sees, and the final stage (`fit.shaping`) that
gives the winner the potential learned from the demos (grace/proposers/offline/potential.py),
whoever proposed the winner."""

from __future__ import annotations

from dataclasses import dataclass, replace
from statistics import fmean
from typing import Any

import numpy as np

from grace.config import EvolveConfig
from grace.data.trajectories import Trajectories
from grace.program import ProgramError, RewardProgram
from grace.search import negatives as rundata
from grace.search.archive import Archive, ProgramRow
from grace.search.executor import Executor
from grace.search.ppo_verdict import IMITATION_FLOOR, beats, seed_values
from grace.tasks import Task
from grace.types import Transitions


@dataclass(frozen=True)
class Shaped:
    """The winner (archive row `row_id`) in its final form, scored as it is: with the learned
    potential, and/or its goal paid as a shift (grace/search/payment.py; `potential` False: the
    potential was not kept)."""

    row_id: int
    source: str
    fitness: float
    heldout: float | None
    metrics: dict[str, Any]
    potential: bool = True


async def trajectories(executor: Executor, task: Task, cfg: EvolveConfig, demos: Trajectories,
                       data: Transitions | None, source: str) -> list[dict[str, Any]]:
    """Whole expert episodes with the parent's per-state reward (GRACE's shaping prompt), then
    the train-split expert and random episodes a potential search scores on (`"prompt": False`;
    `grace.search.negatives.shaping_trajectories`)."""
    episodes, states = cfg.search.shaping_episodes, cfg.search.shaping_states
    out = []
    for ep in list(demos.episodes())[:episodes]:
        idx = np.unique(np.linspace(0, ep.length - 1, min(states, ep.length)).astype(int))
        batch = {"s": ep.obs[:-1][idx], "a": ep.actions[idx], "s_next": ep.obs[1:][idx]}
        res = await executor.rewards(source, batch)
        rewards = [round(float(r), 4) for r in res] if res is not None else []
        out.append({"label": "expert", "states": [rundata.state_dict(row, task) for row in batch["s_next"]],
                    "rewards": rewards, "steps": idx.tolist(), "terminated": bool(ep.terminated)})
    return out + ([] if data is None else [t | {"prompt": False} for t in rundata.shaping_trajectories(task, data)])


def demo_potential(task: Task, cfg: EvolveConfig, trajs: list[dict[str, Any]]) -> Any:
    """The potential learned from the demos (`trajectories`, for one reward's scale), or None when
    none clearly rises along the expert episodes (grace/proposers/offline/potential.py)."""
    from grace.fitness.base import fit_settings
    from grace.proposers.offline.potential import HORIZON_CAP, reward_spread, search_potential

    gamma = fit_settings(cfg, task).gamma
    return search_potential([t for t in trajs if not t.get("prompt", True)], task.schema, reward_spread(trajs),
                            horizon=min(HORIZON_CAP, 1.0 / max(1e-6, 1.0 - gamma)))


async def with_demo_potential(executor: Executor, task: Task, cfg: EvolveConfig, demos: Trajectories,
                              data: Transitions, source: str) -> str | None:
    """`source` with the potential learned from the demos for it (its PARAMS kept, validated), or
    None when no potential clearly rises along the expert episodes or the shaped program is refused."""
    from grace.proposers.offline.potential import with_potential

    pot = demo_potential(task, cfg, await trajectories(executor, task, cfg, demos, data, source))
    if pot is None:
        return None
    try:
        return with_potential(RewardProgram(source), pot).validate(task.schema).source
    except ProgramError:
        return None


async def final(archive: Archive, executor: Executor, task: Task, cfg: EvolveConfig, best: ProgramRow,
                trajs: list[dict[str, Any]], data: Transitions | None = None) -> Shaped | None:
    """The winner with the learned potential, scored once in the sandbox with its PARAMS kept
    (the terminal value is learned again under the shaping); None when no potential clearly
    rises along the expert episodes or the shaped program fails. With PPO in the loop on (and
    `data`), PPO trains the winner with and without the potential in one batch and the potential
    is kept only when its policy is clearly the more expert-like (a potential that ranks with time can
    still teach worse: measured on the fixed-horizon Acrobot, benchmarks/results/teach2.md).
    Recorded as archive meta `shaping_final` before it is used."""
    from grace.fitness.base import fit_settings
    from grace.fitness.offline import DATA_KEY, WORKER_FN
    from grace.proposers.offline.potential import with_potential

    fit = replace(fit_settings(cfg, task), params=False)
    pot = demo_potential(task, cfg, trajs)
    record: dict[str, Any] = {"program": best.id, "potential": None}
    shaped: Shaped | None = None
    if pot is not None:
        record |= pot.meta
        try:
            program = with_potential(RewardProgram(best.best_source), pot).validate(task.schema)
        except ProgramError as exc:
            program, record["error"] = None, str(exc)
        if program is not None:
            out = await executor.call(WORKER_FN, program.source, data_key=DATA_KEY, params=program.params, fit=fit,
                                      seed=cfg.seed)
            if out.ok:
                res = out.value
                shaped = Shaped(best.id, program.with_params(res.params).source, float(res.fitness),
                                res.heldout_fitness, dict(res.metrics))
            else:
                record["error"] = str(out.error)
    if shaped is not None and data is not None:
        record |= await _ppo_check(task, cfg, best.best_source, shaped.source, data)
        shaped = shaped if record["kept"] else None
    archive.set_meta("shaping_final", record)
    return shaped


SHAPING_MARGIN = 0.02
"""Share of the expert-likeness a potential must add to be kept (relative: the scale differs by task,
~0.9 on Pendulum, ~0.002 on MountainCar): a shaped reward is a bigger program, and on Pendulum the
pair tied (0.8655 with vs 0.8628 without) while the true returns ran the other way."""


async def _ppo_check(task: Task, cfg: EvolveConfig, unshaped: str, shaped: str, data: Transitions) -> dict[str, Any]:
    """PPO in the loop on the winner without and with its potential: `kept` when the shaped reward's
    policy is more expert-like by a SHAPING_MARGIN share, or when neither policy reaches IMITATION_FLOOR
    of the expert's expert-likeness and the one without is not more expert-like beyond the seed noise
    (or PPO in the loop is off: then it is kept). When neither is ahead beyond the seed noise, both
    train on `ppo.select_confirm` more seeds first, as PPO in the loop's choice does: on terminating
    MountainCar two seeds compared 0.97 and 0.12 with the potential against 0.74 and 0.98 without,
    and dropping it left a reward that reached the flag on 1 final seed of 5 (quality10.md)."""
    from grace.search import ppo_select

    if not ppo_select.enabled(cfg, task):
        return {"kept": True}
    results, seconds = await ppo_select.train_and_score(task, cfg, [unshaped, shaped], data, cfg.seed + 7_919)
    seeds_without, seeds_with = (seed_values(r) for r in results)
    confirm = 0
    if (cfg.ppo.select_confirm > 0 and seeds_without and seeds_with
            and not beats(seeds_without, seeds_with) and not beats(seeds_with, seeds_without)):
        extra, more_s, _ = await ppo_select.more_seeds(task, cfg, [unshaped, shaped], data, cfg.seed + 7_919)
        seeds_without, seeds_with = seeds_without + extra[0], seeds_with + extra[1]
        seconds, confirm = seconds + more_s, cfg.ppo.select_confirm
    without, with_ = (fmean(v) if v else None for v in (seeds_without, seeds_with))
    expert = ppo_select.discriminator(cfg, data, task).reference_likeness(data)
    blind = (with_ is not None and max(with_, without or 0.0) < IMITATION_FLOOR * expert
             and not (seeds_without and seeds_with and beats(seeds_without, seeds_with)))
    kept = with_ is not None and (blind or without is None
                                  or with_ > without + SHAPING_MARGIN * max(abs(with_), abs(without)))
    return {"kept": kept, "uninformative": blind,
            "ppo_check": {"expert_likeness_without": without, "expert_likeness_with": with_,
                          "expert_likeness_expert": expert, "seeds_without": seeds_without, "seeds_with": seeds_with,
                          "true_return_without": results[0].true_return_mean,
                          "true_return_with": results[1].true_return_mean, "seconds": seconds,
                          "confirm_seeds": confirm}}


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def provenance(shaped: Shaped | None, record: dict[str, Any] | None) -> dict[str, str]:
    """The provenance line of a winner that carries a learned potential ({} otherwise);
    `record`: the archive meta `shaping_final`."""
    if shaped is None:
        check = (record or {}).get("ppo_check")
        if record and not record.get("kept", True) and check:
            with_, without = check.get("expert_likeness_with"), check.get("expert_likeness_without")
            how = "less" if with_ is None or (without is not None and with_ <= without) else \
                f"not {SHAPING_MARGIN:.0%} more"
            return {"shaping": (f"potential {record.get('potential')} learned from the demos, not kept: PPO on it was "
                                f"{how} expert-like ({_num(with_)} vs {_num(without)} without)")}
        return {}
    m, nan = shaped.metrics, float("nan")
    return {"shaping": (f"potential {(record or {}).get('potential')} learned from the demos: rank correlation with "
                        f"time {m.get('potential_progress_heldout', nan):.2f} on held-out expert episodes; above negative "
                        f"episodes at equal time in {m.get('potential_above_heldout', nan):.2f} of pairs; discount "
                        f"{m.get('gamma', nan):.3g}" + _checked(record))}


def _checked(record: dict[str, Any] | None) -> str:
    check = (record or {}).get("ppo_check")
    if not check:
        return ""
    pair = (f"expert-likeness {_num(check.get('expert_likeness_with'))} with it, "
            f"{_num(check.get('expert_likeness_without'))} without")
    if (record or {}).get("uninformative"):
        return (f"; kept: PPO in the loop could not tell ({pair}, the held-out expert's "
                f"{_num(check.get('expert_likeness_expert'))}: neither policy imitated)")
    return f"; kept by PPO in the loop ({pair})"
