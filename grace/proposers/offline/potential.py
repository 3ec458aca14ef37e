"""Potentials learned from the demos: GRACE's shaping step (7) without an LLM.

A shaping potential Phi(s) (`def potential(s, p)`, grace.program.contract.POTENTIAL) leaves the
optimal policies unchanged (Ng, Harada & Russell 1999) but pays progress at every step, so a good
one rises along expert episodes and stays above non-expert episodes at the same time step. The
search tries simple candidates over the observation schema, the features the offline operator
already knows (plain fields, vector norms and sums, angles of cos/sin pairs, chained angles,
products and differences), each as itself, as its distance from where the experts end
or from where they start (`|f - c|`), or as its squared distance (`(f - c)**2`), with either sign, and sums of two of them
(`g1 + mix * g2`: what rises along an expert episode is often a mix, e.g. MountainCar's energy,
speed plus height, ranks with time at 0.96-0.99 where speed alone reaches 0.78):

- the sign is chosen on half of the expert episodes (rank correlation with the time step) and
  the candidate is scored on the other half (`potential_progress`, held-out) and against the
  negative (random-policy) episodes at equal time steps (`potential_above`);
- the best candidate is kept only when it clearly beats having none (progress >= MIN_PROGRESS,
  above >= MIN_ABOVE); a sum of two is tried for the PAIR_POOL best single candidates, over a grid
  of mixes (each part in units of its spread along the expert episodes), and costs PAIR_COST;
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
PAIR_POOL = 8
"""Single candidates (the best by score) whose pairwise sums are tried."""
PAIR_COST = 0.03
"""Score a two-part potential gives up for being longer (progress and above are in [0, 1])."""
MIXES = (0.25, 0.5, 1.0, 2.0, 4.0)
KEYS = ("potential_scale", "potential_centre", "potential_mix", "potential_centre_2", "potential_zero")
_SHAPES = {"linear": "{v}", "abs": "xp.abs({v} - p[\"{c}\"])", "square": "({v} - p[\"{c}\"]) ** 2"}
_COMPLEXITY = {"field": 0.0, "norm": 0.01, "vsum": 0.01, "angle": 0.01, "chain": 0.015, "prod": 0.02,
               "diff": 0.02}
_SHAPE_COST = {"linear": 0.0, "abs": 0.01, "square": 0.01}


@dataclass(frozen=True)
class Part:
    """shape(feature(s)): the feature itself, `|f - centre|` or `(f - centre)**2`."""

    feature: Feature
    shape: str
    centre: float

    def values(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return _shaped(self.feature.values(arrays), self.shape, self.centre)

    def label(self, c: str) -> str:
        name = self.feature.label
        return {"linear": name, "abs": f"|{name} - {c}|", "square": f"({name} - {c})^2"}[self.shape]

    def code(self, centre_key: str) -> str:
        return _SHAPES[self.shape].format(v=re.sub(r"\bs_next\.", "s.", self.feature.code), c=centre_key)

    @property
    def cost(self) -> float:
        return _COMPLEXITY[self.feature.kind] + _SHAPE_COST[self.shape]


@dataclass(frozen=True)
class Potential:
    """Phi(s) = scale * (part1(s) [+ mix * part2(s)] - zero), with the scores that chose it."""

    parts: tuple[Part, ...]
    mix: float
    zero: float
    scale: float
    progress: float
    above: float

    def raw(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        """part1 + mix * part2 (unscaled, not zeroed)."""
        out = self.parts[0].values(arrays)
        return out + self.mix * self.parts[1].values(arrays) if len(self.parts) > 1 else out

    def values(self, arrays: dict[str, np.ndarray]) -> np.ndarray:
        return self.scale * (self.raw(arrays) - self.zero)

    @property
    def params(self) -> dict[str, float]:
        out = {"potential_scale": self.scale}
        if self.parts[0].shape != "linear":
            out["potential_centre"] = self.parts[0].centre
        if len(self.parts) > 1:
            out["potential_mix"] = self.mix
            if self.parts[1].shape != "linear":
                out["potential_centre_2"] = self.parts[1].centre
        return out | {"potential_zero": self.zero}

    @property
    def label(self) -> str:
        text = self.parts[0].label("c")
        return text + (f" + mix * {self.parts[1].label('c2')}" if len(self.parts) > 1 else "")

    @property
    def code(self) -> str:
        value = self.parts[0].code("potential_centre")
        if len(self.parts) > 1:
            value += f' + p["potential_mix"] * {self.parts[1].code("potential_centre_2")}'
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
    singles: list[tuple[float, Potential, np.ndarray, np.ndarray]] = []  # (score, sign-applied pot, ge, gn)
    for feat in candidate_features(schema):
        fe, fn = feat.values(exp.arrays), feat.values(neg.arrays)
        if not (np.all(np.isfinite(fe)) and np.all(np.isfinite(fn))):
            continue
        ends, starts = float(np.median(fe[exp.last])), float(np.median(fe[exp.step == exp.step.min()]))
        for shape in _SHAPES:
            for centre in ((0.0,) if shape == "linear" else sorted({rnd(ends), rnd(starts), 0.0})):
                part = Part(feat, shape, centre)
                ge, gn = _shaped(fe, shape, centre), _shaped(fn, shape, centre)
                sign = 1.0 if mean_progress(ge[pick], exp.episode[pick], exp.step[pick]) >= 0 else -1.0
                scored = _score(sign * ge, sign * gn, exp, neg, held, part.cost)
                if scored is not None:
                    singles.append((scored[0], Potential((part,), 0.0, 0.0, sign, *scored[1:]), sign * ge, sign * gn))
    singles.sort(key=lambda x: -x[0])
    best = [(sc, pot) for sc, pot, _, _ in singles if pot.progress >= MIN_PROGRESS and pot.above >= MIN_ABOVE][:1]
    pool = singles[:PAIR_POOL]
    for (_, p1, ge1, gn1), (_, p2, ge2, gn2) in combinations(pool, 2):
        if p1.parts[0].feature == p2.parts[0].feature:
            continue
        s1, s2 = _span(ge1), _span(ge2)
        for k in MIXES:
            ge, gn = ge1 / s1 + k * ge2 / s2, gn1 / s1 + k * gn2 / s2
            # the sign is the one chosen on the pick half: a sum of two rising parts rises
            scored = _score(ge, gn, exp, neg, held, p1.parts[0].cost + p2.parts[0].cost + PAIR_COST)
            if scored is None or scored[1] < MIN_PROGRESS or scored[2] < MIN_ABOVE:
                continue
            if not best or scored[0] > best[0][0]:
                # Phi = scale * (g1 + mix * g2) with the signs folded into scale and mix
                mix = float(f"{k * s1 / s2 * p2.scale * p1.scale:.4g}")
                best = [(scored[0], Potential(p1.parts + p2.parts, mix, 0.0, p1.scale, scored[1], scored[2]))]
    if not best:
        return None
    return _sized(best[0][1], exp, neg, reward_spread, horizon)


def _span(g: np.ndarray) -> float:
    return float(np.quantile(g, 0.95) - np.quantile(g, 0.05)) or float(np.ptp(g)) or 1.0


def _score(ge: np.ndarray, gn: np.ndarray, exp: _Episodes, neg: _Episodes, held: np.ndarray,
           cost: float) -> tuple[float, float, float] | None:
    """(score, held-out progress, above) of potential values on the expert and negative rows."""
    progress = mean_progress(ge[held], exp.episode[held], exp.step[held])
    above = above_at_equal_time(ge, exp.step, gn, neg.step)
    if math.isnan(progress) or math.isnan(above):
        return None
    return progress + 2 * (above - 0.5) - cost, progress, above


def _sized(pot: Potential, exp: _Episodes, neg: _Episodes, reward_spread: float | None, horizon: float) -> Potential:
    """Scale and zero: the rise along an expert episode ~ the reward's spread times its length
    (at most `horizon` steps); Phi = 0 where episodes terminate, else where experts end."""
    unit = Potential(pot.parts, pot.mix, 0.0, 1.0, pot.progress, pot.above)
    ge, gn = unit.raw(exp.arrays), unit.raw(neg.arrays)
    span = _span(ge)
    length = float(np.mean([exp.step[exp.episode == e].max() + 1 for e in np.unique(exp.episode)]))
    spread = reward_spread if reward_spread and math.isfinite(reward_spread) and reward_spread > 1e-9 else 1.0
    scale = pot.scale * spread * min(length, horizon) / span
    ended = np.concatenate([ge[exp.ends_terminated], gn[neg.ends_terminated]])
    zero = float(np.mean(ended)) if ended.size else float(np.mean(ge[exp.last]))
    return Potential(pot.parts, pot.mix, rnd(zero), float(f"{scale:.4g}"), pot.progress, pot.above)


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


def reward_spread(trajectories: list[dict[str, Any]]) -> float | None:
    """The spread (std) of the parent's rewards along the expert trajectories given, if any."""
    values = [float(r) for t in trajectories if t.get("label", "expert") == "expert" for r in t.get("rewards") or []]
    return float(np.std(values)) if len(values) > 1 else None
