"""The batched PARAMS search: many settings per reward call, calibrated together.

The sequential search (grace/fitness/params.py) scores one setting per reward call on 4000 rows;
its ~160 calibrations per candidate were 96% of the offline loop's time
(benchmarks/results/loop_speed.md). Here every step of the search is one call:

- the K settings of a step are broadcast into the program as (K, 1) arrays (elementwise reward
  code then returns (K, B)), checked once per program against one-by-one calls; a program that
  does not broadcast (branches on a parameter, reduces over the batch) is scored one setting per
  call for the rest of its search;
- the K reward rows are calibrated in one vectorised solve (grace/fitness/calibrate_many.py);
- the search is one whose steps are batches: a coordinate scan (one call per constant, each from
  the best point so far: scanning them all from the start in one call lost 0.011 of mean train
  fitness on benchmarks/loop_speed.py's CartPole programs) and a compass search (all 2d axis moves at once, plus the last successful move repeated;
  the step halves when nothing improves), then the max-margin centring of step-like constants
  with every constant's bracket scanned in one call, refined in a second and the moves checked
  together in a third (one call per step: the fixed cost of a call, ~0.5 ms of calibration and
  reward-call overhead, was a third of the search when each constant had its own calls);
- a step moves only for a gain above `TIE` (1e-6), and the first of settings within it of the
  best wins: below that, fitness differences are the solver's rounding, which decided 11% / 32%
  of the fitted PARAMS of loop_speed.py's CartPole / MountainCar programs before (with the old
  path's solver swapped in, identical PARAMS for 192/215 and 128/188 in a 6-generation run; then
  213/215 and 186/188, and 380/383 and 318/323 over 12 generations);
- on `fit.batch_rows` (1000) train rows. `grace.fitness.offline.evaluate` then scores the result on
  every row and keeps the initial PARAMS when train fitness got worse, as for the sequential path.
"""

from __future__ import annotations

import numpy as np

from grace.config import FitSettings
from grace.fitness.batched import CompiledReward, call_reward
from grace.fitness.calibrate_many import calibrate_many
from grace.fitness.param_space import ParamSpace, fit_subsample

SCAN = np.array([-1.5, -1.0, -0.75, -0.3, -0.1, 0.1, 0.3, 0.75, 1.5])
"""The coordinate scan's moves (in units of each value's magnitude): the sequential path's, and
-1 (the value 0: a term switched off, a threshold or centre at 0), which a compass search on a
lattice of steps would otherwise only approach (Nelder-Mead finds it by shrinking)."""
BRACKET = 0.02 * 4.0 ** np.arange(5)
"""Centring: the steps each side of a constant first scanned for the plateau's edge (0.02..5.12)."""
REFINE = np.arange(1, 8) / 8.0
"""Centring: the points within the bracket scanned next (an eighth of it, as 3 bisections)."""
TIE = 1e-6
"""Fitness differences below this are the solver's rounding, not the reward's: the Newton solve
stops within ~1e-10 of the penalised optimum, but the fitness it reports leaves the ridge out, so
on near-separable rows (where the objective is flat in alpha) two solvers' fitness differs by up
to ~3e-7 (calibrate_many vs metrics.calibrate on loop_speed.py's MountainCar programs); and an
affine change of the reward (a weight scaling all of it) leaves the calibrated fitness the same up
to rounding. The search moves only for more, and the first of settings within it wins, so
rounding does not steer the search and constants do not drift along a direction fitness cannot see."""


def _first_best(f: np.ndarray) -> int:
    """The first setting within `TIE` of the highest fitness (np.argmax when that is not finite)."""
    top = np.max(f)
    return int(np.flatnonzero(f >= top - TIE)[0]) if np.isfinite(top) else int(np.argmax(f))


BROADCAST_RTOL = 1e-5
"""How close a broadcast call's rows must be to one-by-one calls (relative to each row's largest
magnitude). Not exact: the (K, 1) PARAMS arrays take the data's float dtype, while a one-by-one
call's Python-float PARAMS take the dtype of whatever they meet (float32 fields, or a float64
`xp.where(..., 1.0, 0.0)`), so the two may round differently at float32's ~1e-7. A program that
does not broadcast (a batch-wide mean, a parameter in a branch) is off by far more."""


def same_rows(many: np.ndarray, one: np.ndarray) -> bool:
    """Broadcast rows equal one-by-one rows up to `BROADCAST_RTOL` of each row's largest finite
    magnitude (NaN where the other is NaN, infinities equal)."""
    with np.errstate(all="ignore"):
        scale = np.max(np.abs(np.where(np.isfinite(one), one, 0.0)), axis=1, initial=0.0, keepdims=True)
        close = np.abs(many - one) <= BROADCAST_RTOL * scale + 1e-12
    same = (many == one) | (np.isnan(many) & np.isnan(one))  # equal infinities, both NaN
    return bool(np.all(close | same))


class BatchScorer:
    """Train fitness of PARAMS settings, many per call: a cache by rounded values, a budget of
    settings scored, the broadcast check, and the calibration warm start."""

    def __init__(self, compiled: CompiledReward, sub: dict[str, np.ndarray], label: np.ndarray,
                 space: ParamSpace, fit: FitSettings) -> None:
        self.compiled, self.sub, self.label, self.space, self.fit = compiled, sub, label, space, fit
        self.count, self.limit = 0, fit.budget
        self.cache: dict[tuple[float, ...], float] = {}
        self.seen: list[tuple[float, np.ndarray]] = []
        self.warm: tuple[float, float] | None = None
        self.by_row: dict[bytes, float] = {}  # fitness by the reward row (its bytes)
        self.broadcast: bool | None = None if callable(getattr(compiled, "call_many", None)) else False

    def first(self) -> float:
        """Fitness of the initial PARAMS; the program's own exception propagates (as sequential)."""
        initial = self.space.decode(np.zeros(len(self.space.names)))
        r, _ = call_reward(self.compiled, self.sub, initial, self.fit.chunk)
        self.count += 1
        f = self._calibrate(r[None, :])[0]
        self.cache[tuple(initial.values())] = f
        return f

    def __call__(self, u: np.ndarray) -> np.ndarray:
        """Fitness at each row of u (K, d); -inf where the reward raised or was non-finite, and
        for settings past the budget."""
        vals = self.space.values(u)
        keys = [tuple(v) for v in vals.tolist()]
        out = np.full(len(u), -np.inf)
        todo: dict[tuple[float, ...], list[int]] = {}
        for i, key in enumerate(keys):
            if key in self.cache:
                out[i] = self.cache[key]
            elif key in todo or len(todo) < self.limit - self.count:
                todo.setdefault(key, []).append(i)
        if todo:
            first = [ix[0] for ix in todo.values()]
            f = self._calibrate(self._rewards(vals[first]))
            self.count += len(first)
            for (key, ix), v in zip(todo.items(), f, strict=True):
                self.cache[key] = float(v)
                out[ix] = v
                self.seen.append((float(v), np.array(u[ix[0]], np.float64)))
        return out

    def _rewards(self, vals: np.ndarray) -> np.ndarray:
        """(K, rows) rewards of K settings: one broadcast call, or one call per setting."""
        if self.broadcast is not False:
            try:
                r = np.array(self.compiled.call_many(self.sub["s"], self.sub["a"], self.sub["s_next"],  # type: ignore[attr-defined]
                                                     dict(zip(self.space.names, vals.T, strict=True))))
                if self.broadcast is None and len(vals) >= 2:  # once per program: does it broadcast?
                    one = self._one_by_one(vals[[0, -1]])
                    self.broadcast = same_rows(r[[0, -1]], one)
                if self.broadcast is not False:
                    return r
            except Exception:  # noqa: BLE001 - the program's own failure: score one by one
                self.broadcast = False
        return self._one_by_one(vals)

    def _one_by_one(self, vals: np.ndarray) -> np.ndarray:
        rows = []
        for v in vals:
            try:
                r, _ = call_reward(self.compiled, self.sub, dict(zip(self.space.names, v.tolist(), strict=True)),
                                   self.fit.chunk)
            except Exception:  # noqa: BLE001 - a setting where the reward raises scores worst
                r = np.full(len(self.label), np.nan)
            rows.append(r)
        return np.array(rows, np.float64)

    def _calibrate(self, r: np.ndarray) -> np.ndarray:
        """Fitness of each reward row; a row equal to one calibrated before (a threshold moved
        within a gap between data values: 11-14% of the rows of loop_speed.py's programs) takes
        its fitness without a solve."""
        keys = [row.tobytes() for row in np.ascontiguousarray(r)]  # the row itself: hashing 8 kB is 4x the cost of keeping it
        first: dict[bytes, int] = {}
        for i, k in enumerate(keys):
            first.setdefault(k, i)
        new = [i for k, i in first.items() if k not in self.by_row]
        if new:
            rn = r[new]
            finite = np.isfinite(rn).all(axis=1)
            cal = calibrate_many(rn, self.label, start=self.warm if self.fit.warm_start else None)
            fn = np.where(finite, cal["fitness"], -np.inf)
            for i, v in zip(new, fn, strict=True):
                self.by_row[keys[i]] = float(v)
            good = np.flatnonzero(finite & (cal["alpha"] > 0.0))
            if len(good):  # neighbouring settings calibrate alike: start the next solves here
                j = good[np.argmax(fn[good])]
                self.warm = (float(cal["alpha"][j]), float(cal["beta"][j]))
        return np.array([self.by_row[k] for k in keys])


def fit_params_batched(compiled: CompiledReward, data: dict[str, np.ndarray], params: dict[str, float],
                       seed: int = 0, fit: FitSettings | None = None) -> tuple[dict[str, float], int]:
    """`grace.fitness.params.fit_params` with `fit.batched`: (params, settings scored)."""
    found, count = fit_candidates(compiled, data, params, seed, fit, 1)
    return found[0][0], count


def fit_candidates(compiled: CompiledReward, data: dict[str, np.ndarray], params: dict[str, float],
                   seed: int = 0, fit: FitSettings | None = None, n: int = 1
                   ) -> tuple[list[tuple[dict[str, float], float]], int]:
    """The search's answer and, after it, up to n - 1 runners-up (the best other settings it
    scored, best first, those within 0.05 of the answer on the subsample), then the initial
    PARAMS, each with its fitness on the subsample: (candidates, settings scored).
    `grace.fitness.offline.evaluate` picks among them by that fitness times the return ranking
    of whole train episodes, which the subsample cannot see: two settings that separate the
    states equally well can rank whole episodes oppositely."""
    fit = fit or FitSettings()
    space = ParamSpace(params)
    d = len(space.names)
    rows = fit_subsample(data, np.random.default_rng(seed), fit.batch_rows)
    sub = {k: data[k][rows] for k in ("s", "a", "s_next")}
    score = BatchScorer(compiled, sub, data["label"][rows].astype(bool), space, fit)
    f0 = score.first()
    best_u, best_f = np.zeros(d), f0
    eye = np.eye(d)
    for i in range(d):  # coordinate scan, a constant per call: each from the best so far (the
        if score.count >= fit.budget // 2:  # moves of one constant often only pay once another moved)
            break
        u = best_u + SCAN[:, None] * eye[i]
        f = score(u)
        j = _first_best(f)
        if f[j] > best_f + TIE:
            best_u, best_f = u[j], f[j]
    best_u, best_f = _compass(score, best_u, best_f, fit.budget)
    for f, u in score.seen:  # first best wins: the least-moved point among equals
        if f > best_f + TIE:
            best_u, best_f = u, f
    if not best_f > f0 + fit.improve_tol:
        best_u, best_f = np.zeros(d), f0
    if fit.centre_budget > 0:
        score.limit = score.count + max(fit.centre_budget, (2 * len(BRACKET) + 2 * len(REFINE) + 2) * d + 1)
        best_u = _centre(score, best_u, best_f, fit.improve_tol)
    answer = dict(params) if not np.any(best_u != 0) else space.decode(best_u)
    at = float(score(best_u[None, :])[0]) if np.any(best_u != 0) else f0  # scored: the centring checks it
    found = [(answer, at if np.isfinite(at) else best_f)]
    keys = {tuple(answer.values()), tuple(space.decode(np.zeros(d)).values())}

    def add(f: float, u: np.ndarray) -> None:
        cand = space.decode(u)
        if tuple(cand.values()) not in keys:
            keys.add(tuple(cand.values()))
            found.append((cand, f))

    # best first, settings within TIE of each other in the order they were scored (a stable sort)
    near = sorted((fu for fu in score.seen if fu[0] > best_f - 0.05), key=lambda fu: -round(fu[0] / TIE))
    # the last runner-up is the one least like the answer: along a direction the subsample cannot
    # tell apart (a centre that moves nothing it can see) whole-episode returns may still differ
    far = None
    if n >= 3 and near:  # the first of the farthest (as max would pick), in one array operation
        far = near[int(np.argmax(np.max(np.abs(np.array([u for _, u in near]) - best_u), axis=1)))]
    for f, u in near:
        if len(found) >= n - (far is not None):
            break
        add(f, u)
    if far is not None:
        add(*far)
    for f, u in near:  # the far one was among them already: the next best fills its place
        if len(found) >= n:
            break
        add(f, u)
    return [*found, (dict(params), f0)], score.count


def _compass(score: BatchScorer, u: np.ndarray, best: float, budget: int,
             step: float = 0.3, tol: float = 1e-3) -> tuple[np.ndarray, float]:
    """Compass search: every axis move of `step` each way at once (plus the last successful move
    repeated); move to the best that improves and double the step (up to 16x its start), else halve
    it, until it is below `tol` (as Nelder-Mead's xatol) or the budget is spent."""
    d, start = len(u), step
    moves = np.vstack([np.eye(d), -np.eye(d)])
    last: np.ndarray | None = None
    while step >= tol and score.count < budget:
        cand = u + step * moves
        if last is not None:
            cand = np.vstack([cand, u + last])
        f = score(cand)
        j = _first_best(f)
        if f[j] > best + TIE:  # a success doubles the step (up to the first one): long valleys are walked fast
            last, u, best = cand[j] - u, cand[j], float(f[j])
            step = min(2 * step, 16 * start)
        else:
            last, step = None, step / 2
    return u, best


def _centre(score: BatchScorer, u: np.ndarray, best: float, tol: float) -> np.ndarray:
    """Max-margin step (see `grace.fitness.params._centre_in_plateau`): move each constant to the
    middle of the interval where fitness stays within `tol` of the best. Every constant's
    `BRACKET` each way is scanned in one call for the plateau's edge, the brackets are refined in
    a second; then all the moves are checked together in a third, and when the joint move leaves
    the plateau, each constant's own move in a fourth: those within `tol` are kept one after the
    other as long as the point they make still is (the order: the widest plateau first)."""
    u = np.array(u, np.float64)
    d, nb, nr = len(u), len(BRACKET), len(REFINE)
    eye, signs = np.eye(d), np.array([-1.0, 1.0])
    f = score(u + (signs[None, :, None, None] * BRACKET[None, None, :, None] * eye[:, None, None, :]).reshape(-1, d))
    fails = (f < best - tol).reshape(d, 2, nb)
    # a plateau running past the range one way is left alone; worse a step of 0.02 away either
    # way is a smooth optimum, which stays
    first = fails.argmax(axis=2)
    todo = np.flatnonzero(fails.any(axis=2).all(axis=1) & first.any(axis=1))
    if not len(todo):
        return u
    lo = np.where(first[todo] > 0, BRACKET[np.maximum(first[todo] - 1, 0)], 0.0)  # (t, 2)
    hi = BRACKET[first[todo]]
    pts = lo[:, :, None] + (hi - lo)[:, :, None] * REFINE[None, None, :]  # (t, 2, nr)
    f = score(u + (signs[None, :, None, None] * pts[..., None] * eye[todo][:, None, None, :]).reshape(-1, d))
    fails = (f < best - tol).reshape(len(todo), 2, nr)
    inner = np.where(fails.any(axis=2), fails.argmax(axis=2), nr)
    at = np.arange(len(todo))[:, None]
    edge = np.where(inner > 0, pts[at, np.arange(2)[None, :], np.maximum(inner - 1, 0)], lo)  # (t, 2)
    lo_edge, hi_edge = -edge[:, 0], edge[:, 1]
    wide = hi_edge - lo_edge > 0
    todo, shift, width = todo[wide], ((lo_edge + hi_edge) / 2)[wide], (hi_edge - lo_edge)[wide]
    if not len(todo):
        return u
    joint = u.copy()
    joint[todo] += shift
    if score(joint[None, :])[0] >= best - tol:
        return joint
    if len(todo) == 1:
        return u
    ok = score(u + shift[:, None] * eye[todo]) >= best - tol
    v = u.copy()
    for k in np.argsort(-width, kind="stable"):
        if ok[k]:
            w = v.copy()
            w[todo[k]] += shift[k]
            if not np.any(v != u) or score(w[None, :])[0] >= best - tol:  # the first is scored
                v = w
    return v
