"""What the offline operator learns from the data before proposing: candidate terms and scores.

From the TaskContext (sample expert / negative states, or per-field class statistics when there
are too few samples) it builds class samples, enumerates candidate terms over the schema with
initial constants taken from the data (centres at the positive median, scales from the positive
spread, thresholds at the best split between the classes, linear signs from the class means),
and scores every term by its ranking AUC (expert above negative). A greedy forward selection
builds well-separating multi-term sums; the worst-scored examples of a parent steer which term
a mutation adds. Nothing here is task-specific: it only reads field names, sizes and values.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from itertools import combinations
from typing import Any

import numpy as np

from grace.fitness.metrics import auc_pos_neg
from grace.proposers.offline.terms import Feature, Term, rnd

N_SYNTH = 256
MIN_REAL = 4
BASE_SHAPES = ("abs", "square", "gauss", "above", "below", "linear")
COMPLEXITY = {"field": 0.0, "norm": 0.004, "vsum": 0.004, "angle": 0.004, "prod": 0.008,
              "diff": 0.008, "chain": 0.006, "effort": 0.0, "act": 0.0, "cell": 0.006}
CELL_RADIUS = 2
"""Cell terms look at grid cells within this Manhattan distance of the grid's focus."""
"""AUC handicap per feature kind: prefer plain fields when a derived feature is not better."""


def auc(vp: np.ndarray, vn: np.ndarray) -> float:
    """Probability that a positive scores above a negative (ties count half); 0.5 if a class is empty."""
    return auc_pos_neg(vp, vn, empty=0.5)


def states_to_arrays(states: list[dict[str, Any]], schema: Any) -> dict[str, np.ndarray] | None:
    """[{field: value}] -> {field: (N,), (N, k) or (N, *grid shape)} plus the schema's derived
    scalars (N,); None if a field is missing or malformed."""
    if not states:
        return None
    out: dict[str, np.ndarray] = {}
    try:
        for f in schema.fields:
            arr = np.asarray([st[f.name] for st in states], dtype=float)
            shape = (len(states), *f.shape) if f.shape else (len(states), f.size)
            arr = arr.reshape(len(states)) if f.size == 1 else arr.reshape(shape)
            out[f.name] = np.nan_to_num(arr)
        for d in getattr(schema, "derived", ()):
            out[d.name] = np.nan_to_num(np.asarray([st[d.name] for st in states], dtype=float).reshape(len(states)))
    except (KeyError, TypeError, ValueError):
        return None
    return out


def _stat(st: dict[str, Any], key: str, default: float, size: int) -> np.ndarray:
    v = np.asarray(st.get(key, default), dtype=float).ravel()
    return v if v.size == size else np.full(size, float(np.mean(v)) if v.size else default)


def _synth(ctx: Any, cls: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    out = {}
    columns = [(f.name, f.size, f.shape) for f in ctx.schema.fields]
    columns += [(d.name, 1, ()) for d in getattr(ctx.schema, "derived", ())]
    for name, size, shape in columns:
        st = ctx.stats.get(name, {}) or {}
        mean = _stat(st, f"{cls}_mean", 0.0, size)
        std = np.abs(_stat(st, f"{cls}_std", 1.0, size))
        x = rng.normal(mean, std, size=(N_SYNTH, size))
        x = np.clip(x, _stat(st, f"{cls}_min", -np.inf, size), _stat(st, f"{cls}_max", np.inf, size))
        out[name] = x[:, 0] if size == 1 else x.reshape(N_SYNTH, *shape) if shape else x
    return out


def class_samples(ctx: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], str]:
    """Positive and negative sample arrays: the context's states, else drawn from its stats."""
    pos = states_to_arrays(ctx.expert_states, ctx.schema)
    neg = states_to_arrays(ctx.negative_states, ctx.schema)
    if pos is not None and neg is not None and min(len(ctx.expert_states), len(ctx.negative_states)) >= MIN_REAL:
        return pos, neg, "states"
    rng = np.random.default_rng(0)
    return _synth(ctx, "pos", rng), _synth(ctx, "neg", rng), "stats" if ctx.stats else "none"


def trig_pairs(schema: Any) -> list[tuple[str, str]]:
    """(cos_field, sin_field) pairs recognised by name (`cos_x` / `sin_x`, `xcos` / `xsin`)."""
    scalars = [f.name for f in schema.fields if f.size == 1]
    return [(n, n.replace("cos", "sin", 1)) for n in scalars
            if "cos" in n and n.replace("cos", "sin", 1) in scalars]


def init_params(shape: str, vp: np.ndarray, vn: np.ndarray) -> dict[str, float]:
    """Sensible starting constants for `shape` from the feature's class samples."""
    allv = np.concatenate([vp, vn])
    spread = float(np.std(allv)) or 1.0
    c = float(np.median(vp)) if len(vp) else 0.0
    sc = float(np.std(vp)) if len(vp) > 1 else 0.0
    sc = sc if sc > 1e-6 * (1 + abs(c)) else 0.1 * spread
    if shape == "abs":
        return {"w": rnd(1 / sc), "c": rnd(c)}
    if shape == "square":
        return {"w": rnd(1 / sc**2), "c": rnd(c)}
    if shape == "gauss":
        return {"w": 1.0, "c": rnd(c), "s": rnd(1.5 * sc)}
    if shape == "cos":
        return {"w": 1.0, "c": rnd(float(np.arctan2(np.mean(np.sin(vp)), np.mean(np.cos(vp)))))}
    if shape in ("above", "below"):
        qs = np.unique(np.quantile(allv, np.linspace(0.02, 0.98, 25)))
        sign = 1 if shape == "above" else -1
        acc = [0.5 * (np.mean(sign * (vp - t) > 0) + np.mean(sign * (vn - t) <= 0)) for t in qs]
        return {"w": 1.0, "t": rnd(float(qs[int(np.argmax(acc))]))}
    d = float(np.mean(vp) - np.mean(vn)) if len(vp) and len(vn) else 1.0
    return {"w": rnd((1.0 if d >= 0 else -1.0) / spread)}


@dataclass
class Analysis:
    """Class samples and every candidate term with its initial constants and AUC."""

    pos: dict[str, np.ndarray]
    neg: dict[str, np.ndarray]
    source: str
    features: list[Feature]
    terms: list[Term] = field(default_factory=list)
    quality: dict[tuple[str, Feature], float] = field(default_factory=dict)
    action_terms: list[Term] = field(default_factory=list)
    _spread: dict[int, tuple[Term, float, float, float]] = field(default_factory=dict, repr=False)

    def class_spread(self, t: Term) -> tuple[float, float, float]:
        """(spread over both class samples, mean over positives, mean over negatives) of one of
        `terms` (kept: guided proposals ask it of every term for every parent)."""
        hit = self._spread.get(id(t))
        if hit is None or hit[0] is not t:  # the term is kept with its entry: its id stays its own
            tp, tn = t.values(self.pos), t.values(self.neg)
            hit = (t, float(np.std(np.concatenate([tp, tn]))) + 1e-9, float(np.mean(tp)), float(np.mean(tn)))
            self._spread[id(t)] = hit
        return hit[1:]

    def make(self, shape: str, feat: Feature) -> Term:
        """A term with constants initialised from the data (action terms: defaults)."""
        if not feat.evaluable:
            return Term("cost", feat, {"w": 0.1}) if feat.kind == "effort" else Term("linear", feat, {"w": 0.1})
        return Term(shape, feat, init_params(shape, feat.values(self.pos), feat.values(self.neg)))

    def values(self, terms: list[Term]) -> tuple[np.ndarray, np.ndarray]:
        n1, n0 = len(next(iter(self.pos.values()))), len(next(iter(self.neg.values())))
        vp, vn = np.zeros(n1), np.zeros(n0)
        for t in terms:
            if t.feature.evaluable:
                vp, vn = vp + t.values(self.pos), vn + t.values(self.neg)
        return vp, vn

    def score(self, terms: list[Term]) -> float:
        return auc(*self.values(terms))

    def shapes_for(self, feat: Feature) -> tuple[str, ...]:
        if not feat.evaluable:
            return ("cost",) if feat.kind == "effort" else ("linear",)
        return BASE_SHAPES + (("cos",) if feat.kind == "angle" else ())

    def greedy(self, max_terms: int, start: list[Term] | None = None,
               exclude: set[Feature] | None = None) -> list[Term]:
        """Forward selection: add the term that most improves the sum's AUC."""
        chosen = list(start or [])
        best = self.score(chosen) if chosen else 0.5
        used = {t.feature for t in chosen} | (exclude or set())
        while len(chosen) < max_terms:
            vp0, vn0 = self.values(chosen)
            cand = [(auc(vp0 + t.values(self.pos), vn0 + t.values(self.neg))
                     - COMPLEXITY[t.feature.kind], i)
                    for i, t in enumerate(self.terms[:120]) if t.feature not in used]
            if not cand:
                break
            score, i = max(cand)
            if chosen and score < best + 0.002:
                break
            chosen.append(self.terms[i])
            used.add(self.terms[i].feature)
            best = score
        return chosen


def state_features(schema: Any) -> list[Feature]:
    """Single-state features of a schema: scalar fields and derived scalars, norms and sums of
    vector fields, every channel of the grid cells near a grid's focus, angles of (cos, sin) pairs
    and chained angles."""
    feats = [Feature("field", (f.name,)) for f in schema.fields if f.size == 1]
    feats += [Feature("field", (d.name,)) for d in getattr(schema, "derived", ())]
    for f in schema.fields:
        if f.size > 1 and not f.shape:
            feats += [Feature("norm", (f.name,)), Feature("vsum", (f.name,))]
        elif len(f.shape) == 3 and f.focus:
            fx, fy = f.focus
            feats += [Feature("cell", (f.name, i, j, c)) for i in range(f.shape[0]) for j in range(f.shape[1])
                      if abs(i - fx) + abs(j - fy) <= CELL_RADIUS for c in range(f.shape[2])]
    pairs = trig_pairs(schema)
    feats += [Feature("angle", pr) for pr in pairs]
    feats += [Feature("chain", p1 + p2) for p1, p2 in zip(pairs, pairs[1:], strict=False)]
    return feats


def analyse(ctx: Any) -> Analysis:
    """Build the Analysis of a task context (deterministic)."""
    pos, neg, source = class_samples(ctx)
    scalars = [f.name for f in ctx.schema.fields if f.size == 1]
    scalars += [d.name for d in getattr(ctx.schema, "derived", ())]
    feats = state_features(ctx.schema)
    an = Analysis(pos, neg, source, [])

    def best_auc(feat: Feature) -> float:
        q = auc(feat.values(pos), feat.values(neg))
        return max(q, 1 - q)

    top = sorted(scalars, key=lambda n: -best_auc(Feature("field", (n,))))[:5]
    for x, y in combinations(top, 2):
        feats += [Feature("prod", (x, y)), Feature("diff", (x, y))]
    an.features = feats
    scored = []
    for feat in feats:
        for shape in an.shapes_for(feat):
            term = an.make(shape, feat)
            q = auc(term.values(pos), term.values(neg))
            an.quality[term.key] = q
            scored.append((COMPLEXITY[feat.kind] - q, len(scored), term))
    an.terms = [t for _, _, t in sorted(scored, key=lambda x: (x[0], x[1]))]
    if ctx.action.kind == "continuous":
        an.action_terms = [an.make("cost", Feature("effort"))]
    else:
        an.action_terms = [an.make("linear", Feature("act", (k,))) for k in range(max(ctx.action.n, 0))]
    return an


def context_key(ctx: Any) -> str:
    text = repr((ctx.name, ctx.schema.names, ctx.action, ctx.stats, ctx.expert_states,
                 ctx.negative_states))
    return hashlib.sha256(text.encode()).hexdigest()


def guided_terms(an: Analysis, worst: list[dict[str, Any]], schema: Any,
                 exclude: set[Feature]) -> list[tuple[float, Term]]:
    """Candidate terms scored by how well they fix the parent's worst-scored examples.

    A good addition gives the worst positives (experts the parent scored low) high values
    and the worst negatives (non-experts it scored high) low values, in units of the term's
    spread over the class samples; the term's own AUC breaks ties.
    """
    wp = states_to_arrays([w.get("state", {}) for w in worst if w.get("label") == "expert"], schema)
    wn = states_to_arrays([w.get("state", {}) for w in worst if w.get("label") != "expert"], schema)
    out = []
    for t in an.terms:
        if t.feature in exclude:
            continue
        q = an.quality.get(t.key, 0.5)
        score = 4.0 * (q - 0.5)
        if wp is not None or wn is not None:
            sd, mean_p, mean_n = an.class_spread(t)
            mp = float(np.mean(t.values(wp))) if wp is not None else mean_p
            mn = float(np.mean(t.values(wn))) if wn is not None else mean_n
            score += float(np.clip((mp - mn) / sd, -3, 3))
        out.append((score, t))
    out.sort(key=lambda x: -x[0])
    return out
