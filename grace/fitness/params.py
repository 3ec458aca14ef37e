"""PARAMS fitting: a loop stage applied to every candidate, whoever proposed it.

Derivative-free (coordinate scan + Nelder-Mead) on a class-stratified subsample of the train
rows, then a max-margin centring of step-like constants (see `fit_params`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from grace.config import FitSettings
from grace.fitness.batched import CompiledReward, call_reward
from grace.fitness.metrics import calibrate
from grace.fitness.param_space import ParamSpace, fit_subsample, round_param
from grace.fitness.params_batched import fit_params_batched

__all__ = ["ParamSpace", "fit_params", "round_param"]

# The search's settings (budget, subsample, improve_tol, centre_budget, chunk) are the run's
# `[fit]` config section (grace.config.FitSettings). improve_tol: fitted PARAMS must beat the
# initial ones by more than this: smaller "gains" are float noise on a scale-invariant objective
# (float32 rewards round at ~1e-7) and only make constants drift (e.g. a weight creeping to 1e8).


def fit_params(
    compiled: CompiledReward,
    data: dict[str, np.ndarray],
    params: dict[str, float],
    seed: int = 0,
    fit: FitSettings | None = None,
) -> tuple[dict[str, float], int]:
    """Derivative-free search of PARAMS maximising train fitness; returns (params, n_evals).

    Each value v moves additively as v + u * |v| (u * 1 for a value near zero), so thresholds
    and centres can cross zero. A coordinate scan over u in +-{0.1, 0.3, 0.75, 1.5} (robust for step-like
    thresholds) is followed by Nelder-Mead on the rest of the budget, on a class-stratified
    subsample of train rows. Points where the reward is non-finite or raises count as worst.
    The initial values are returned unless something beat them by more than `fit.improve_tol`.
    The objective is invariant to the reward's scale, so inflating a weight cannot win. Budgets
    and sizes come from `fit` (the run's `[fit]` section; defaults when None).
    """
    from scipy.optimize import minimize

    fit = fit or FitSettings()
    if fit.batched:
        return fit_params_batched(compiled, data, params, seed, fit)
    budget, tol = fit.budget, fit.improve_tol

    space = ParamSpace(params)
    names, decode = space.names, space.decode
    rng = np.random.default_rng(seed)
    rows = fit_subsample(data, rng, fit.subsample)
    label = data["label"][rows].astype(bool)
    sub = {k: data[k][rows] for k in ("s", "a", "s_next")}
    count = 0
    limit = [budget]
    cache: dict[tuple[float, ...], float] = {}
    seen: list[tuple[float, np.ndarray]] = []
    warm: list[tuple[float, float] | None] = [None]

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
            r, _ = call_reward(compiled, sub, p, fit.chunk)
        except Exception:
            if first:
                raise
            r = np.full(len(rows), np.nan)
        if np.all(np.isfinite(r)):
            cal = calibrate(r, label, start=warm[0])
            val = cal["fitness"]
            if cal["alpha"] > 0.0 and fit.warm_start:  # neighbouring points calibrate alike: start the next solve here
                warm[0] = (cal["alpha"], cal["beta"])
        else:
            val = -np.inf
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
    if not best_f > f0 + tol:
        best_u, best_f = np.zeros(len(names)), f0
    limit[0] = count + fit.centre_budget
    centred = _centre_in_plateau(score, best_u, best_f, tol)
    if not np.any(centred != 0):
        return dict(params), count
    return decode(centred), count


def _centre_in_plateau(score: Callable[[np.ndarray], float], u: np.ndarray, best: float,
                       tol: float) -> np.ndarray:
    """Max-margin step: move each constant to the middle of the interval where fitness stays
    within `tol` of the best (`fit.centre_budget` extra evaluations at most). Step-like constants (thresholds) fitted on a few positives
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
                if score(v) < best - tol:
                    hi = step
                    break
                lo, step = step, step * 2
            if hi is None:
                break
            for _ in range(3):
                mid = (lo + hi) / 2
                v = u.copy()
                v[i] += sign * mid
                lo, hi = (lo, mid) if score(v) < best - tol else (mid, hi)
            edges.append(sign * lo)
        if len(edges) == 2 and edges[1] - edges[0] > 0:
            v = u.copy()
            v[i] += (edges[0] + edges[1]) / 2
            if score(v) >= best - tol:
                u = v
    return u


