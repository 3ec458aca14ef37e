"""The final payment stage: how the winner's goal is paid, chosen by PPO in the loop.

A goal's terminal value (`PARAMS["terminal"]`, "finishing is as good as the best state forever")
can be paid two ways that have the same optimal policy (grace/fitness/returns.py):

- with its floor (`PARAMS["floor"]`, the default): every step pays `r - floor >= 0` and finishing
  pays the rest of the terminal value as a lump;
- as a shift (no floor in the file): every step pays `r - r_abs <= 0` and finishing ends a penalty.

PPO learns them differently, and neither trains better on every reward: with the same winners and
seeds (benchmarks/results/payment.md) the floor trained MountainCar to 0.975 success vs 0.60 and
OpenTwoDoors to 1.00 vs 0.60, the shift trained fixed-horizon Acrobot to a mean return of -410 vs
-430 (true reward -410) and GoToRedBall to 1.00 success vs 0.925. So, as the shaping check does for
the potential, PPO in the loop trains the winner both ways in one batch and settles them by the rule
of its own choice (`ppo_verdict.settle`, after `ppo.select_confirm` more seeds when the first two
are within noise), the floor in the place of the offline-better rival: the shift replaces the
floor when its policies are more expert-like beyond the seed noise, or within it when they are
more reliably expert-like (`_verdict`); never the true reward. That rule against a beats-only one
moved no row beyond the seed noise (MountainCar pair over 20 seeds, three BabyAI levels:
benchmarks/results/quality21/notes.md, babyai13/notes.md); it is kept for one rule throughout.
Recorded as archive meta `payment_final` before it is used.

A winner with a learned potential (grace/proposers/offline/potential.py) has it sized to the
reward's spread along expert episodes, which the floor's steps (`r - floor >= 0`) never outweigh.
As a shift, every step also costs `r_abs - r`: on MountainCar ~0.48 a step against a spread of
~0.09, so progress the potential pays for still lost reward at every step, and the shift's policies
failed on 2 seeds of 5 (benchmarks/results/mc_shaping.md). So the shift's potential is scaled by
`living_cost / spread` when that is above 1, both measured on the expert states the potential
was sized on (the shaping stage's episodes): its rise along an expert episode then covers what the
episode's steps cost, and an expert-like step pays about nothing, not a loss. The same rule for
every task; the floor's potential is left as it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from statistics import fmean
from typing import Any

import numpy as np

from grace.config import EvolveConfig
from grace.fitness.returns import absorbing_reward, payment
from grace.program import FLOOR_KEY, TERMINAL_KEY, ProgramError, RewardProgram
from grace.proposers.offline.potential import expert_rewards, usable_spread
from grace.search.archive import Archive, ProgramRow
from grace.search.executor import Executor
from grace.search.ppo_verdict import IMITATION_FLOOR, beats, compare, seed_values
from grace.search.shaping import Shaped
from grace.tasks import Task
from grace.types import Transitions

META = "payment_final"
"""Archive meta key of the stage's record."""
ROUNDING = 1e-3
"""Relative gap between r_abs and the floor below which they are one value written twice."""
SCALE_KEY = "potential_scale"
"""The learned potential's scale (grace/proposers/offline/potential.py `KEYS`)."""


def pays_a_goal(params: dict[str, float], gamma: float) -> bool:
    """Do the two payments differ for these PARAMS: a terminal value above the floor (a goal)?
    For a keep-alive reward the floor is the absorbing state's reward and both are one shift."""
    if TERMINAL_KEY not in params or FLOOR_KEY not in params:
        return False
    floor = float(params[FLOOR_KEY])
    shift, _ = payment(float(params[TERMINAL_KEY]), floor, gamma)
    r_abs = absorbing_reward(float(params[TERMINAL_KEY]), gamma)
    # the file rounds both to 4 significant digits: a keep-alive terminal value's r_abs can sit a
    # rounding above its floor (CartPole: -91.07 -> -0.91990 vs -0.9199), which is no goal
    return r_abs - shift > ROUNDING * max(abs(r_abs), abs(floor))


def without_floor(program: RewardProgram) -> RewardProgram:
    """The same program paid as a shift: its PARAMS less the floor."""
    return program.with_params({k: v for k, v in program.params.items() if k != FLOOR_KEY})


def shift_sizing(program: RewardProgram, rewards: Any, gamma: float) -> dict[str, float] | None:
    """How the shift's potential is scaled (module docstring), from the reward on the expert states
    its potential was sized on (`expert_rewards`):
    {"living_cost", "spread", "factor", SCALE_KEY, "floor_scale"} (SCALE_KEY: the shift's,
    "floor_scale": the program's own, which the floor keeps); None when the program has no learned
    potential scale or the rewards are unusable. `factor` is 1 (the scale kept) unless the living
    cost is above the spread."""
    r = np.asarray(rewards, dtype=np.float64)
    if SCALE_KEY not in program.potential_params or r.size == 0 or not np.all(np.isfinite(r)):
        return None
    cost = float(absorbing_reward(float(program.params[TERMINAL_KEY]), gamma) - r.mean())
    spread = usable_spread(float(r.std()))
    factor = max(1.0, cost / spread)
    scale = float(program.params[SCALE_KEY])
    return {"living_cost": cost, "spread": spread, "factor": factor,
            SCALE_KEY: scale if factor == 1.0 else float(f"{scale * factor:.4g}"), "floor_scale": scale}


async def final(archive: Archive, executor: Executor, task: Task, cfg: EvolveConfig, best: ProgramRow,
                shaped: Shaped | None, data: Transitions | None,
                trajs: list[dict[str, Any]] | None = None) -> Shaped | None:
    """The winner (`shaped` when the shaping stage gave it its potential, else `best`'s fitted
    program) paid as a shift when PPO in the loop says so (module docstring), scored once in the
    sandbox as it will be paid; None when the floor stays (or the stage does not apply: PPO in the
    loop off, `ppo.select_payment` off, no goal, no data). `trajs`: the shaping stage's episodes,
    whose expert rewards size the shift's potential."""
    from grace.fitness.base import fit_settings
    from grace.search import ppo_select

    if not cfg.ppo.select_payment or data is None or not ppo_select.enabled(cfg, task):
        return None
    fit = fit_settings(cfg, task)
    source = shaped.source if shaped is not None and shaped.row_id == best.id else best.best_source
    program = RewardProgram(source)
    if not pays_a_goal(program.params, fit.gamma):
        return None
    record: dict[str, Any] = {"program": best.id, "terminal": program.params[TERMINAL_KEY],
                              "floor": program.params[FLOOR_KEY], "kept": "floor"}
    sizing = shift_sizing(program, expert_rewards(trajs), fit.gamma)
    if sizing is not None:
        record["shift_sizing"] = sizing
    try:
        shift = without_floor(program)
        if sizing is not None:  # its own scale when the factor is 1
            shift = shift.with_params(shift.params | {SCALE_KEY: sizing[SCALE_KEY]})
        shift = shift.validate(task.schema)
    except ProgramError as exc:
        archive.set_meta(META, record | {"error": str(exc)})
        return None
    sources = [program.source, shift.source]
    seed = cfg.seed + 3_571  # not a seed of the selection rounds (seed + 104_729 k) nor of the shaping check
    results, seconds = await ppo_select.train_and_score(task, cfg, sources, data, seed)
    floor_seeds, shift_seeds = (seed_values(r) or [] for r in results)
    confirm = 0
    if (cfg.ppo.select_confirm > 0 and floor_seeds and shift_seeds
            and not beats(floor_seeds, shift_seeds) and not beats(shift_seeds, floor_seeds)):
        extra, more_s, _ = await ppo_select.more_seeds(task, cfg, sources, data, seed)
        floor_seeds, shift_seeds = floor_seeds + extra[0], shift_seeds + extra[1]
        seconds, confirm = seconds + more_s, cfg.ppo.select_confirm
    chosen, why = _verdict(floor_seeds, shift_seeds,
                           lambda: IMITATION_FLOOR * ppo_select.discriminator(cfg, data, task).reference_likeness(data))
    record |= {"kept": "shift" if chosen else "floor", "why": why, "seconds": seconds, "confirm_seeds": confirm,
               "expert_likeness_floor": fmean(floor_seeds) if floor_seeds else None,
               "expert_likeness_shift": fmean(shift_seeds) if shift_seeds else None,
               "seeds_floor": floor_seeds, "seeds_shift": shift_seeds,
               "true_return_floor": results[0].true_return_mean, "true_return_shift": results[1].true_return_mean}
    if chosen:
        scored = await _score(executor, shift, replace(fit, params=False, terminal=False), cfg.seed)
        if isinstance(scored, str):
            record |= {"kept": "floor", "error": scored}
            chosen = False
    archive.set_meta(META, record)
    if not chosen:
        return None
    return Shaped(best.id, shift.source, float(scored.fitness), scored.heldout_fitness, dict(scored.metrics),
                  potential=shaped is not None and shaped.row_id == best.id)


_WHY = {
    ("noise", True): "more expert-like beyond the seed noise",
    ("noise", False): "more expert-like beyond the seed noise",
    ("imitated", True): "within the seed noise, the only one of the two whose policies imitated on some seed",
    ("imitated", False): "within the seed noise, the only one of the two whose policies imitated on some seed",
    ("reliable", True): "within the seed noise, more reliably expert-like (higher mean minus 2 standard errors)",
    ("reliable", False): "within the seed noise, and the shift is not more reliably expert-like",
}


def _verdict(floor_seeds: list[float], shift_seeds: list[float], imitated: Callable[[], float]) -> tuple[bool, str]:
    """(is the shift chosen, why), by PPO in the loop's rule for a leader and its offline-better
    rival (`ppo_verdict.compare`, as `settle` uses it) with the floor as the rival, the default a tie
    keeps: the shift wins when it is more expert-like beyond the seed noise; within it, when only
    its policies imitated on some seed (reached `imitated()`, computed only then), else when it is
    more reliably expert-like (the higher mean minus two standard errors). On fixed-horizon
    MountainCar the floor's six seeds gave 0.68 with one at 0, the shift's 0.84 with none below
    0.77: within the noise, and a beats-only rule kept the floor (quality20's payment record)."""
    if not shift_seeds or not floor_seeds:
        return bool(shift_seeds), f"PPO on the {'floor' if shift_seeds else 'shift'} gave no score"
    chosen, ground = compare(shift_seeds, floor_seeds, imitated)
    return chosen, _WHY[ground, chosen]


async def _score(executor: Executor, program: RewardProgram, fit: Any, seed: int) -> Any:
    """The offline evaluation of `program` as it is (PARAMS, terminal value and floor kept), or the
    error's text."""
    from grace.fitness.offline import DATA_KEY, WORKER_FN

    out = await executor.call(WORKER_FN, program.source, data_key=DATA_KEY, params=program.params, fit=fit, seed=seed)
    return out.value if out.ok else str(out.error)


def _num(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def provenance(record: dict[str, Any] | None, winner: int) -> dict[str, str]:
    """The provenance line of the stage for the winner (archive row `winner`); {} when it did not run."""
    if not record or record.get("program") != winner or "expert_likeness_floor" not in record:
        return {}
    sizing = record.get("shift_sizing") or {}
    scaled = (f" (its potential x{sizing['factor']:.3g}: a step's cost {sizing['living_cost']:.3g} vs the "
              f"reward's spread {sizing['spread']:.3g})" if sizing.get("factor", 1.0) > 1.0 else "")
    pair = (f"expert-likeness {_num(record.get('expert_likeness_shift'))} paid as a shift{scaled}, "
            f"{_num(record.get('expert_likeness_floor'))} with the floor; "
            f"{len(record.get('seeds_floor') or [])} seeds each, {record.get('seconds', 0.0):.0f} s")
    why = f": {record['why']}" if record.get("why") else ""
    if record.get("kept") == "shift":
        return {"payment": f"the goal is paid as a shift (no floor): chosen by PPO in the loop ({pair}){why}"}
    return {"payment": f"the goal is paid with its floor: PPO in the loop ({pair}){why}"}
