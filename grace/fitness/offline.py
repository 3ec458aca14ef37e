"""GRACE offline fitness: the labelled data set, PARAMS fitting, scoring and counterexamples.

`build_offline_data` turns expert demos and negative datasets into one flat dict of numpy
arrays (shipped once to every sandbox worker); `evaluate` runs inside a worker with a compiled
reward, fits its PARAMS on the train split, and returns fitness, metrics and the worst-scored
examples for the proposer. The objective itself (calibrated AIRL discriminator, why pi is a
constant, invariance to r -> c*r + d) is documented in `grace.fitness.metrics`.

Data dict (all numpy arrays; row i is one transition):
    s, s_next   (N, obs_dim) float32      a        (N,) int64 or (N, act_dim) float32
    label       (N,) int8, 1 = S_e (expert/goal), 0 = S_n
    train       (N,) bool; held-out rows are whole episodes
    episode     (N,) int64, unique across sources     step   (N,) int64
    source      (N,) int16 index into source_names; source_names[0] == "expert"
    source_names (n_sources,) str
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grace.demos import Trajectories, random_policy, rollout
from grace.fitness.metrics import calibrate, metrics
from grace.tasks import ObsSchema, Task

Selector = Callable[[Trajectories], np.ndarray]
CompiledReward = Callable[[np.ndarray, Any, np.ndarray, dict[str, float]], Any]

EXPERT = "expert"
FIT_SUBSAMPLE = 4000
FIT_BUDGET = 120
CHUNK = 65536
IMPROVE_TOL = 1e-4
"""A fit must beat the initial PARAMS by this much: smaller "gains" are float noise on a
scale-invariant objective and only make constants drift (e.g. a weight creeping to 1e8)."""
"""Fitted PARAMS must beat the initial ones by more than this (float32 rewards round at ~1e-7,
so a pure rescaling of r would otherwise look like an improvement)."""


# -- data ----------------------------------------------------------------------------------------
def random_negatives(task: Task, episodes: int, seed: int = 0) -> Trajectories:
    """Uniform-random-policy rollouts on the task's numpy env (GRACE's first D-)."""
    traj = rollout(task, random_policy(task), episodes, seed)
    traj.meta.update({"task": task.name, "source": "random", "episodes": episodes, "seed": seed})
    return traj


def _holdout_episodes(n: int, frac: float, rng: np.random.Generator) -> np.ndarray:
    """Indices of ~frac of n episodes (at least one when n >= 2 and frac > 0, never all)."""
    if n < 2 or frac <= 0:
        return np.zeros(0, np.int64)
    k = min(n - 1, max(1, int(round(frac * n))))
    return np.sort(rng.choice(n, size=k, replace=False))


def _actions(actions: np.ndarray, task: Task) -> np.ndarray:
    a = np.asarray(actions)
    if task.action.kind == "discrete":
        return a.reshape(len(a)).astype(np.int64)
    return a.reshape(len(a), -1).astype(np.float32)


def build_offline_data(
    task: Task,
    demos: Trajectories,
    negatives: list[tuple[str, Trajectories]],
    holdout: float = 0.25,
    seed: int = 0,
    max_per_class: int = 20000,
    selector: Selector | None = None,
) -> dict[str, np.ndarray]:
    """Label transitions as S_e / S_n, split whole episodes into train / held-out, subsample.

    - S_e: goal tasks: transitions reaching the final state of an expert episode that ended by
      termination; keep-alive tasks: every expert transition. `selector(demos)` (a bool per
      expert transition) overrides this.
    - S_n: every other expert transition plus all transitions of each negative dataset
      (`(source_tag, trajectories)`, e.g. ("random", ...), ("ppo-r1", ...), ("file:x.npz", ...)).
    - Held-out: ~`holdout` of the expert episodes (stratified by whether they contain
      positives, so held-out goal states exist when >= 2 episodes have one) and the same
      fraction of each negative dataset's episodes.
    - Each class is subsampled to `max_per_class` transitions (deterministic in `seed`); the
      fitness weights the classes equally, so the few goal positives are not drowned out.
    """
    rng = np.random.default_rng(seed)
    tr = demos.transitions()
    if selector is not None:
        pos = np.asarray(selector(demos), dtype=bool)
        if pos.shape != (demos.n_transitions,):
            raise ValueError(f"selector returned shape {pos.shape}; expected ({demos.n_transitions},)")
    elif task.kind == "goal":
        pos = tr["terminal"].astype(bool)
    else:
        pos = np.ones(demos.n_transitions, bool)
    if not pos.any():
        raise ValueError(
            f"no positive (expert/goal) transitions in the demos of task {task.name!r}: "
            "a goal task needs at least one expert episode that ended by termination"
        )
    ep_has_pos = np.bincount(tr["episode"], weights=pos, minlength=demos.n_episodes) > 0
    held = np.zeros(demos.n_episodes, bool)
    for group in (np.flatnonzero(ep_has_pos), np.flatnonzero(~ep_has_pos)):
        held[group[_holdout_episodes(len(group), holdout, rng)]] = True
    if demos.n_episodes >= 2 and holdout > 0 and not held.any():
        held[rng.integers(demos.n_episodes)] = True

    names = [EXPERT]
    parts: list[dict[str, np.ndarray]] = [{
        "s": tr["s"], "a": _actions(tr["a"], task), "s_next": tr["s_next"], "label": pos,
        "train": ~held[tr["episode"]], "episode": tr["episode"], "step": tr["step"],
        "source": np.zeros(demos.n_transitions, np.int64),
    }]
    offset = demos.n_episodes
    for tag, traj in negatives:
        t = traj.transitions()
        held_n = np.zeros(traj.n_episodes, bool)
        held_n[_holdout_episodes(traj.n_episodes, holdout, rng)] = True
        if tag in names:
            raise ValueError(f"negative source tag {tag!r} is used twice (or is reserved)")
        names.append(tag)
        parts.append({
            "s": t["s"], "a": _actions(t["a"], task), "s_next": t["s_next"],
            "label": np.zeros(traj.n_transitions, bool), "train": ~held_n[t["episode"]],
            "episode": t["episode"] + offset, "step": t["step"],
            "source": np.full(traj.n_transitions, len(names) - 1, np.int64),
        })
        offset += traj.n_episodes
    data = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    keep = np.zeros(len(data["label"]), bool)
    for cls in (True, False):
        idx = np.flatnonzero(data["label"] == cls)
        if len(idx) > max_per_class:
            idx = rng.choice(idx, size=max_per_class, replace=False)
        keep[idx] = True
    out = {k: v[keep] for k, v in data.items()}
    out["s"] = out["s"].astype(np.float32)
    out["s_next"] = out["s_next"].astype(np.float32)
    out["label"] = out["label"].astype(np.int8)
    out["train"] = out["train"].astype(bool)
    out["episode"] = out["episode"].astype(np.int64)
    out["step"] = out["step"].astype(np.int64)
    out["source"] = out["source"].astype(np.int16)
    out["source_names"] = np.array(names, dtype=str)
    return out


# -- running the reward ----------------------------------------------------------------------------
def _call(compiled: CompiledReward, data: dict[str, np.ndarray],
          params: dict[str, float]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rewards (float64, (N,)) and components (each broadcast to (N,) or (N, k)), in chunks."""
    n = len(data["s"])
    totals, comps = [], []
    for lo in range(0, max(n, 1), CHUNK):
        s, a, s2 = data["s"][lo : lo + CHUNK], data["a"][lo : lo + CHUNK], data["s_next"][lo : lo + CHUNK]
        b = len(s)
        with np.errstate(all="ignore"):
            out = compiled(s, a, s2, dict(params))
        total, parts = (out if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)
                        else (out, {}))
        totals.append(np.broadcast_to(np.asarray(total, np.float64), (b,)))
        comps.append({str(k): _rows(v, b) for k, v in parts.items()})
    r = np.concatenate(totals)[:n]
    components = {k: np.concatenate([c[k] for c in comps]) for k in comps[0]} if comps else {}
    return r, components


def _rows(v: Any, b: int) -> np.ndarray:
    """A component as one row per transition: scalars broadcast, (1, k) and (k,) tile."""
    v = np.asarray(v, np.float64)
    if v.ndim == 0:
        return np.broadcast_to(v, (b,))
    if v.shape[0] == b:
        return v
    return np.broadcast_to(v, (b, *(v.shape[1:] if v.shape[0] == 1 else v.shape)))


def _check_finite(r: np.ndarray) -> None:
    bad = int(np.sum(~np.isfinite(r)))
    if bad:
        n_nan = int(np.sum(np.isnan(r)))
        raise ValueError(f"reward is non-finite on {bad} of {len(r)} transitions ({n_nan} NaN, {bad - n_nan} inf)")


# -- PARAMS fitting --------------------------------------------------------------------------------
def _fit_subsample(data: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """Train rows, at most `size`, keeping up to half the budget for each class."""
    y, train = data["label"].astype(bool), data["train"]
    pos, neg = np.flatnonzero(train & y), np.flatnonzero(train & ~y)
    k_pos = min(len(pos), max(size // 2, size - len(neg)))
    k_neg = min(len(neg), size - k_pos)
    pick = [rng.choice(ix, size=k, replace=False) if len(ix) > k else ix
            for ix, k in ((pos, k_pos), (neg, k_neg))]
    return np.sort(np.concatenate(pick))


def _round_params(params: dict[str, float]) -> dict[str, float]:
    """4 significant digits: what `RewardProgram.with_params` writes, so the file rescores the same."""
    return {k: float(f"{v:.4g}") for k, v in params.items()}


def fit_params(
    compiled: CompiledReward,
    data: dict[str, np.ndarray],
    params: dict[str, float],
    seed: int = 0,
    budget: int = FIT_BUDGET,
    subsample: int = FIT_SUBSAMPLE,
) -> tuple[dict[str, float], int]:
    """Derivative-free search of PARAMS maximising train fitness; returns (params, n_evals).

    Each value v moves additively as v + u * |v| (u * 1 for a value near zero), so thresholds
    and centres can cross zero. A coordinate scan over u in +-{0.1, 0.3, 0.75, 1.5} (robust for step-like
    thresholds) is followed by Nelder-Mead on the rest of the budget, on a class-stratified
    subsample of train rows. Points where the reward is non-finite or raises count as worst.
    The initial values are returned unless something beat them by more than IMPROVE_TOL. The
    objective is invariant to the reward's scale, so inflating a weight cannot win.
    """
    from scipy.optimize import minimize

    names = list(params)
    v0 = np.array([params[k] for k in names], np.float64)
    rng = np.random.default_rng(seed)
    rows = _fit_subsample(data, rng, subsample)
    label = data["label"][rows].astype(bool)
    sub = {k: data[k][rows] for k in ("s", "a", "s_next")}
    count = 0
    limit = [budget]
    cache: dict[tuple[float, ...], float] = {}
    seen: list[tuple[float, np.ndarray]] = []

    # Additive moves in units of each value's magnitude: a location (threshold, centre) can cross
    # zero, e.g. a threshold initialised at -0.3 can reach a goal at +0.5 (multiplicative,
    # sign-preserving moves never could). A weight may flip sign when that separates better.
    unit = np.where(np.abs(v0) > 1e-3, np.abs(v0), 1.0)

    def decode(u: np.ndarray) -> dict[str, float]:
        vals = v0 + unit * np.clip(u, -50, 50)
        return _round_params(dict(zip(names, vals.tolist(), strict=True)))

    def score(u: np.ndarray, first: bool = False) -> float:
        nonlocal count
        p = decode(u)
        key = tuple(p.values())
        if key in cache:
            return cache[key]
        if count >= limit[0] and not first:
            return -np.inf
        count += 1
        try:
            r, _ = _call(compiled, sub, p)
        except Exception:
            if first:
                raise
            r = np.full(len(rows), np.nan)
        val = calibrate(r, label)["fitness"] if np.all(np.isfinite(r)) else -np.inf
        cache[key] = val
        seen.append((val, np.array(u, np.float64)))
        return val

    f0 = score(np.zeros(len(names)), first=True)
    best_u, best_f = np.zeros(len(names)), f0
    for i in range(len(names)):
        for du in (-1.5, -0.75, -0.3, -0.1, 0.1, 0.3, 0.75, 1.5):
            if count >= budget // 2:
                break
            u = best_u.copy()
            u[i] += du
            f = score(u)
            if f > best_f:
                best_u, best_f = u, f
    if count < budget:
        step = 0.3
        simplex = np.vstack([best_u] + [best_u + step * np.eye(len(names))[i] for i in range(len(names))])
        minimize(lambda u: -score(u), best_u, method="Nelder-Mead",
                 options={"initial_simplex": simplex, "maxfev": budget - count, "xatol": 1e-3, "fatol": 1e-6})
    for f, u in seen:  # first best wins: the least-moved point among equals
        if f > best_f:
            best_u, best_f = u, f
    if not best_f > f0 + IMPROVE_TOL:
        best_u, best_f = np.zeros(len(names)), f0
    limit[0] = count + CENTRE_BUDGET
    centred = _centre_in_plateau(score, best_u, best_f)
    if not np.any(centred != 0):
        return dict(params), count
    return decode(centred), count


CENTRE_BUDGET = 80
"""Extra reward evaluations for moving fitted constants to the middle of their plateau."""


def _centre_in_plateau(score: Callable[[np.ndarray], float], u: np.ndarray, best: float) -> np.ndarray:
    """Max-margin step: move each constant to the middle of the interval where fitness stays
    within IMPROVE_TOL of the best. Step-like constants (thresholds) fitted on a few positives
    otherwise sit at the edge of the gap between the classes and misclassify held-out states;
    on a smooth objective the interval is tiny and nothing moves; a constant whose plateau runs
    past the search range (no effect, or a pure scale) is left where it is."""
    u = np.array(u, np.float64)
    for i in range(len(u)):
        edges = []
        for sign in (-1.0, 1.0):
            lo, hi, step = 0.0, None, 0.02
            while step <= 5.12:
                v = u.copy()
                v[i] += sign * step
                if score(v) < best - IMPROVE_TOL:
                    hi = step
                    break
                lo, step = step, step * 2
            if hi is None:
                break
            for _ in range(3):
                mid = (lo + hi) / 2
                v = u.copy()
                v[i] += sign * mid
                lo, hi = (lo, mid) if score(v) < best - IMPROVE_TOL else (mid, hi)
            edges.append(sign * lo)
        if len(edges) == 2 and edges[1] - edges[0] > 0:
            v = u.copy()
            v[i] += (edges[0] + edges[1]) / 2
            if score(v) >= best - IMPROVE_TOL:
                u = v
    return u


_fit = fit_params  # `evaluate`'s boolean argument shadows the function's name


# -- evaluation ------------------------------------------------------------------------------------
def _state(row: np.ndarray, schema: ObsSchema | None) -> dict[str, Any]:
    if schema is None:
        return {"raw": [float(x) for x in row]}
    out: dict[str, Any] = {}
    for f in schema.fields:
        sl = schema.slices[f.name]
        out[f.name] = float(row[sl.start]) if f.size == 1 else [float(x) for x in row[sl]]
    return out


def _value(v: np.ndarray) -> float | list[float]:
    return float(v) if np.ndim(v) == 0 else [float(x) for x in np.ravel(v)]


def worst_examples(
    r: np.ndarray,
    data: dict[str, np.ndarray],
    components: dict[str, np.ndarray],
    n_worst: int = 8,
    schema: ObsSchema | None = None,
) -> list[dict[str, Any]]:
    """The most misclassified train rows: positives with the lowest r, negatives with the
    highest r (half each, the other class filling in when one runs short), worst first."""
    y, train = data["label"].astype(bool), data["train"].astype(bool)
    pos = np.flatnonzero(train & y)
    neg = np.flatnonzero(train & ~y)
    pos = pos[np.argsort(r[pos], kind="stable")]
    neg = neg[np.argsort(-r[neg], kind="stable")]
    k_pos = min(len(pos), max(n_worst // 2, n_worst - len(neg)))
    k_neg = min(len(neg), n_worst - k_pos)
    names = [str(x) for x in data["source_names"]]
    out = []
    for i in [*pos[:k_pos], *neg[:k_neg]]:
        out.append({
            "label": "expert" if y[i] else "negative",
            "source": names[int(data["source"][i])],
            "reward": float(r[i]),
            "state": _state(data["s_next"][i], schema),
            "components": {k: _value(v[i]) for k, v in components.items()},
            "episode": int(data["episode"][i]),
            "step": int(data["step"][i]),
        })
    return out


def evaluate(
    compiled: CompiledReward,
    data: dict[str, np.ndarray],
    params: dict[str, float],
    fit_params: bool = True,
    n_worst: int = 8,
    schema: ObsSchema | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """Fit PARAMS (optional), score the reward on all data, and collect counterexamples.

    `compiled(s_raw, a, s_next_raw, params)` returns the total (B,) or (total, components).
    Exceptions from the reward propagate; non-finite rewards raise ValueError with the count.
    Returns {"fitness" (train), "heldout_fitness", "metrics" (floats, see
    `grace.fitness.metrics.metrics`), "params" (fitted, 4 significant digits), "worst",
    "calibration" ({alpha, beta, centre, scale}: D(s) = sigma(alpha * (r - centre) / scale + beta)),
    "n_evals" (reward calls, fitting included)}.
    """
    params = {k: float(v) for k, v in (params or {}).items()}
    n_evals = 0
    fitted = dict(params)
    if fit_params and params:
        fitted, n_evals = _fit(compiled, data, params, seed)
    train, y = data["train"].astype(bool), data["label"].astype(bool)
    r, comps = _call(compiled, data, fitted)
    n_evals += 1
    if fitted != params:  # the subsample may mislead: keep the initial values if train got worse
        # (fit_params only moves constants for a real gain, or to the middle of a plateau)
        r0, comps0 = _call(compiled, data, params)
        n_evals += 1
        if np.all(np.isfinite(r0)) and not (
            np.all(np.isfinite(r))
            and calibrate(r[train], y[train])["fitness"] >= calibrate(r0[train], y[train])["fitness"] - IMPROVE_TOL
        ):
            fitted, r, comps = dict(params), r0, comps0
    _check_finite(r)
    m = metrics(r, y, data["episode"], train, expert=data["source"] == 0)
    cal = calibrate(r[train], y[train])
    return {
        "fitness": m["fitness_train"],
        "heldout_fitness": m["fitness_heldout"],
        "metrics": m,
        "params": fitted,
        "worst": worst_examples(r, data, comps, n_worst, schema),
        "calibration": {k: cal[k] for k in ("alpha", "beta", "centre", "scale")},
        "n_evals": n_evals,
    }


def evaluate_in_worker(
    ctx: Any,
    compiled: CompiledReward,
    data_key: str = "offline",
    params: dict[str, float] | None = None,
    fit_params: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Sandbox-pool entry point (`fn(ctx, compiled, *args, **kwargs)`): reads the shipped data
    from `ctx.data[data_key]` and the observation schema from `ctx.schema`."""
    data = ctx.data[data_key]
    out = evaluate(compiled, data, params or {}, fit_params=fit_params,
                   schema=getattr(ctx, "schema", None), seed=seed)
    if getattr(compiled, "has_debug", False):
        out["debug_output"] = debug_output(compiled, data, out["params"], out["worst"])
    return out


def debug_output(compiled: CompiledReward, data: dict[str, np.ndarray], params: dict[str, float],
                 worst: list[dict[str, Any]]) -> str:
    """GRACE's print helper: the program's own `debug()` on its worst-scored examples.

    Goes back to the proposer only, never into the score. Errors are reported as text."""
    keys = {(w.get("episode"), w.get("step")) for w in worst}
    rows = np.flatnonzero([(e, t) in keys for e, t in zip(data["episode"], data["step"], strict=True)])
    if len(rows) == 0:
        rows = np.arange(min(8, len(data["label"])))
    try:
        return str(compiled.debug(data["s"][rows], data["a"][rows], data["s_next"][rows], params))
    except Exception as exc:  # the program's own helper failed: tell the proposer, do not fail
        return f"debug() raised {type(exc).__name__}: {exc}"
