"""Potentials learned from the demos: GRACE's shaping step (7) without an LLM.

A shaping potential Phi(s) (`def potential(s, p)`, grace.program.contract.POTENTIAL) leaves the
optimal policies unchanged (Ng, Harada & Russell 1999) but pays progress at every step, so a good
one rises along expert episodes and stays above non-expert episodes at the same time step. The
search tries simple candidates over the observation schema, the features the offline operator
already knows (plain fields, vector norms and sums, angles of cos/sin pairs, chained angles,
products and differences), each as itself, as its distance from where the experts end
(`|f - c|`) or as its squared distance (`(f - c)**2`), with either sign:

- the sign is chosen on half of the expert episodes (rank correlation with the time step) and
  the candidate is scored on the other half (`potential_progress`, held-out) and against the
  negative (random-policy) episodes at equal time steps (`potential_above`);
- the best candidate is kept only when it clearly beats having none (progress >= MIN_PROGRESS,
  above >= MIN_ABOVE);
- its scale makes the potential's rise along an expert episode about what the reward's spread
  earns over the episode or the discount's horizon, whichever is shorter (a value-function-like
  size); it is zero where episodes terminate (the absorbing state's potential), else where the
  experts end.

Deterministic; numpy only (it never runs program code).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import combinations
from typing import Any

import numpy as np

from grace.fitness.returns import above_at_equal_time, mean_progress
from grace.program import POTENTIAL, RewardProgram
from grace.proposers.offline.features import state_features, states_to_arrays
from grace.proposers.offline.terms import Feature, rnd

MIN_PROGRESS = 0.5
"""Held-out rank correlation of Phi with time along expert episodes a potential must reach."""
MIN_ABOVE = 0.65
"""Share of (expert, negative) pairs at equal time where the expert's Phi is higher."""
HORIZON_CAP = 100
"""Steps of reward the potential's rise stands for, at most, when the discount is not known (the
final stage passes 1 / (1 - gamma): a value function's reach)."""
KEYS = ("potential_scale", "potential_centre", "potential_zero")
_SHAPES = {"linear": "{v}", "abs": "xp.abs({v} - p[\"potential_centre\"])",
           "square": "({v} - p[\"potential_centre\"]) ** 2"}
_COMPLEXITY = {"field": 0.0, "norm": 0.01, "vsum": 0.01, "angle": 0.01, "chain": 0.015, "cell": 0.015, "prod": 0.02,
               "diff": 0.02}
_SHAPE_COST = {"linear": 0.0, "abs": 0.01, "square": 0.01}


@dataclass(frozen=True)
class Potential:
    """Phi(s) = scale * (shape(feature(s)) - zero), with the scores that chose it."""

    feature: Feature
    shape: str
    centre: float
    zero: float
    scale: float
    progress: float
    above: float

    def values(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.scale * (_shaped(self.feature.values(arrays), self.shape, self.centre) - self.zero)

    @property
    def params(self) -> dict[str, float]:
        out = {"potential_scale": self.scale}
        if self.shape != "linear":
            out["potential_centre"] = self.centre
        return out | {"potential_zero": self.zero}

    @property
    def label(self) -> str:
        name = self.feature.label
        return {"linear": name, "abs": f"|{name} - c|", "square": f"({name} - c)^2"}[self.shape]

    @property
    def code(self) -> str:
        value = _SHAPES[self.shape].format(v=re.sub(r"\bs_next\.", "s.", self.feature.code))
        return (f"def {POTENTIAL}(s, p):\n"
                f'    """Shaping potential learned from the demos: {self.label} rises along expert episodes."""\n'
                f'    return p["potential_scale"] * ({value} - p["potential_zero"])\n')

    @property
    def meta(self) -> dict[str, Any]:
        return {"potential": self.label, "potential_progress": round(self.progress, 4),
                "potential_above": round(self.above, 4)}


def _shaped(v: np.ndarray, shape: str, centre: float) -> np.ndarray:
    if shape == "abs":
        return np.abs(v - centre)
    if shape == "square":
        return (v - centre) ** 2
    return v


@dataclass
class _Episodes:
    arrays: dict[str, np.ndarray]
    step: np.ndarray
    episode: np.ndarray
    last: np.ndarray
    """Rows that end their episode (in the data given)."""
    ends_terminated: np.ndarray
    """Rows that end an episode by termination."""


def _episodes(trajectories: list[dict[str, Any]], schema: Any, label: str) -> _Episodes | None:
    states: list[dict[str, Any]] = []
    step, episode, last, term = [], [], [], []
    for i, tr in enumerate(t for t in trajectories if t.get("label", "expert") == label):
        n = len(tr.get("states") or [])
        if n == 0:
            continue
        states += list(tr["states"])
        steps = list(tr.get("steps") or range(n))[:n]
        step += steps
        episode += [i] * n
        last += [k == n - 1 for k in range(n)]
        term += [k == n - 1 and bool(tr.get("terminated")) for k in range(n)]
    arrays = states_to_arrays(states, schema)
    if arrays is None:
        return None
    return _Episodes(arrays, np.asarray(step), np.asarray(episode), np.asarray(last), np.asarray(term))


def candidate_features(schema: Any) -> list[Feature]:
    """The state features the offline operator knows, for the potential search: the single-state
    ones plus products and differences of the first six scalar fields."""
    scalars = [f.name for f in schema.fields if f.size == 1]
    feats = state_features(schema)
    for x, y in combinations(scalars[:6], 2):
        feats += [Feature("prod", (x, y)), Feature("diff", (x, y))]
    return feats


def search_potential(trajectories: list[dict[str, Any]], schema: Any, reward_spread: float | None = None,
                     horizon: float = HORIZON_CAP) -> Potential | None:
    """The best rising potential over `trajectories` ([{"label": "expert" | "negative",
    "states": [{field: value}], "steps": [...], "terminated": bool}]), or None when no
    candidate clearly beats having none (or there are no expert or no negative episodes).
    `reward_spread` and `horizon` (steps, e.g. 1 / (1 - gamma)) set its scale."""
    exp, neg = _episodes(trajectories, schema, "expert"), _episodes(trajectories, schema, "negative")
    if exp is None or neg is None:
        return None
    ids = np.unique(exp.episode)
    pick = np.isin(exp.episode, ids[::2]) if len(ids) > 1 else np.ones(len(exp.step), bool)
    held = ~pick if len(ids) > 1 else pick
    best: tuple[float, Potential] | None = None
    for feat in candidate_features(schema):
        fe, fn = feat.values(exp.arrays), feat.values(neg.arrays)
        if not (np.all(np.isfinite(fe)) and np.all(np.isfinite(fn))):
            continue
        ends = float(np.median(fe[exp.last]))
        for shape in _SHAPES:
            for centre in ((0.0,) if shape == "linear" else sorted({rnd(ends), 0.0})):
                ge, gn = _shaped(fe, shape, centre), _shaped(fn, shape, centre)
                sign = 1.0 if mean_progress(ge[pick], exp.episode[pick], exp.step[pick]) >= 0 else -1.0
                progress = mean_progress(sign * ge[held], exp.episode[held], exp.step[held])
                above = above_at_equal_time(sign * ge, exp.step, sign * gn, neg.step)
                if math.isnan(progress) or math.isnan(above):
                    continue
                score = progress + 2 * (above - 0.5) - _COMPLEXITY[feat.kind] - _SHAPE_COST[shape]
                if progress >= MIN_PROGRESS and above >= MIN_ABOVE and (best is None or score > best[0]):
                    pot = Potential(feat, shape, centre, 0.0, sign, progress, above)
                    best = (score, pot)
    if best is None:
        return None
    return _sized(best[1], exp, neg, reward_spread, horizon)


def _sized(pot: Potential, exp: _Episodes, neg: _Episodes, reward_spread: float | None, horizon: float) -> Potential:
    """Scale and zero: the rise along an expert episode ~ the reward's spread times its length
    (at most `horizon` steps); Phi = 0 where episodes terminate, else where experts end."""
    ge = _shaped(pot.feature.values(exp.arrays), pot.shape, pot.centre)
    gn = _shaped(pot.feature.values(neg.arrays), pot.shape, pot.centre)
    span = float(np.quantile(ge, 0.95) - np.quantile(ge, 0.05)) or float(np.ptp(ge)) or 1.0
    length = float(np.mean([exp.step[exp.episode == e].max() + 1 for e in np.unique(exp.episode)]))
    spread = usable_spread(reward_spread)
    scale = pot.scale * spread * min(length, horizon) / span
    ended = np.concatenate([ge[exp.ends_terminated], gn[neg.ends_terminated]])
    zero = float(np.mean(ended)) if ended.size else float(np.mean(ge[exp.last]))
    return Potential(pot.feature, pot.shape, pot.centre, rnd(zero), float(f"{scale:.4g}"), pot.progress, pot.above)


def with_potential(program: RewardProgram, pot: Potential) -> RewardProgram:
    """`program` with `pot` as its `potential(s, p)` (an earlier potential and the PARAMS only it
    read are replaced); the result is validated by the caller."""
    source, old = program.source, program.functions.get(POTENTIAL)
    if old is not None:
        lines = source.splitlines()
        first = old.lineno - 1 - len(old.decorator_list)
        source = "\n".join(lines[:first] + lines[old.end_lineno or old.lineno:])
    source = source.rstrip() + "\n\n\n" + pot.code
    params = {k: v for k, v in program.params.items() if k not in program.potential_params and k not in KEYS}
    return RewardProgram(source).with_params(params | pot.params)


def expert_rewards(trajectories: list[dict[str, Any]] | None) -> list[float]:
    """The parent's rewards along the expert trajectories given (the shaping stage's episodes)."""
    return [float(r) for t in trajectories or () if t.get("label", "expert") == "expert" for r in t.get("rewards") or []]


def reward_spread(trajectories: list[dict[str, Any]]) -> float | None:
    """The spread (std) of the parent's rewards along the expert trajectories given, if any."""
    values = expert_rewards(trajectories)
    return float(np.std(values)) if len(values) > 1 else None


def usable_spread(spread: float | None) -> float:
    """`spread`, or 1 when there is none, it is not finite or the reward is flat: what a potential
    is sized against."""
    return spread if spread and math.isfinite(spread) and spread > 1e-9 else 1.0
