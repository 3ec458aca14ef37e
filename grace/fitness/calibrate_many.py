"""`calibrate` for many rewards at once: K rows of rewards on the same labelled rows, one solve.

The batched PARAMS search (grace/fitness/params_batched.py) scores K parameter settings of one
program per reward call on ~1000 rows; calibrating the K rows one by one would spend most of its
time in per-call numpy overhead. Here every step acts on a (K, n) array and the rows that have
converged drop out. The objective, the standardisation (class-balanced median and interquartile
range; the class-balanced standard deviation when the IQR is 0), the ridge, the Newton step with
backtracking and its stopping rule are those of `grace.fitness.metrics.calibrate`, so each row's
fitness equals `calibrate(row, label)["fitness"]` up to float rounding (~1e-12;
tests/fitness/test_params_batched.py). What makes it cheap (benchmarks/results/loop_speed.md):

- a row whose positives do not score higher than its negatives on class-weighted average has its
  optimum at alpha <= 0 (the slope there, where the best beta is 0, is that difference), which
  is chance: it is not solved (12% of the rows of loop_speed.py's programs, the slowest solves);
- the quantiles are read off a sort when the classes have as many rows (the search's subsample
  when both have enough; np.sort is ~5x faster than np.partition at three kth on 1000 rows),
  else off an unstable argsort and the cumulative count of positives at three levels, found by
  one searchsorted;
- a Newton step is one exp, two in-place products and one batched matmul for its five sums;
  a likelihood evaluation one exp and one log1p per value; rows leave the live arrays only when
  one converges; every per-row sum is taken the same way wherever the row sits in the batch.

Rows are not grouped by distinct value as the one-by-one solver does: rewards of the search take
~1000 distinct values on 1000 rows.
"""

from __future__ import annotations

import math

import numpy as np

from grace.fitness.metrics import LN2, QTOL, RIDGE, class_weights

FTOL = 1e-10
"""A row's solve stops when a Newton step gains less than this (as `metrics._newton`)."""


def _quantiles(r: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of finite r: (class-balanced median, interquartile range), the first value whose
    cumulative class weight reaches q (to within QTOL, as `metrics._robust_centre_scale`). The
    sort need not be stable: the order within ties does not change the value found."""
    k, n = r.shape
    n_pos = int(y.sum())
    if 2 * n_pos == n:  # the classes weigh the same per row (the search's subsample when both
        # have enough rows): the q-quantile is the ceil(q n (1 - QTOL))-th smallest
        at = [math.ceil(q * n * (1.0 - QTOL)) - 1 for q in (0.25, 0.5, 0.75)]
        part = np.sort(r, axis=1)[:, at]  # numpy's vectorised sort: 5x np.partition at three kth
        return part[:, 1], part[:, 2] - part[:, 0]
    w_pos, w_neg = 0.5 / n_pos, 0.5 / (n - n_pos)
    order = np.argsort(r, axis=1)
    cum = np.cumsum(y[order], axis=1) * (w_pos - w_neg)
    cum += w_neg * np.arange(1, n + 1)
    total = cum[:, -1:].copy()
    # each row's cumulative weights rise within [0, total]: offset row i by 2 i max(total) and one
    # searchsorted on the flat array finds every row's first position reaching each level
    off = 2.0 * float(total.max()) * np.arange(k)[:, None]
    cum += off
    levels = np.array([0.25, 0.5, 0.75]) * total * (1.0 - QTOL) + off
    at = np.searchsorted(cum.ravel(), levels.ravel()).reshape(k, 3) - n * np.arange(k)[:, None]
    q = np.take_along_axis(r, np.take_along_axis(order, np.minimum(at, n - 1), axis=1), axis=1)
    return q[:, 1], q[:, 2] - q[:, 0]


def _dot(x: np.ndarray, v: np.ndarray) -> np.ndarray:
    """x @ v per row, each row summed the same way wherever it sits in x (BLAS's gemv sums a row
    differently by its position: equal rows must calibrate equal, or the search's ties break by
    rounding)."""
    return np.einsum("kn,n->k", x, v)


def _log_right(z: np.ndarray, sign: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per value: log sigma(s t), t = a z + b (a, b: (K,)), s = +1 for a positive, -1 for a
    negative: the log-probability of its own label, from one exp and one log1p per value (each
    term accurate, as `metrics._at` sums them: no cancellation between large sums)."""
    t = z * a[:, None]
    t += b[:, None]
    e = np.abs(t)
    t *= sign
    np.minimum(t, 0.0, out=t)
    np.negative(e, out=e)
    np.exp(e, out=e)
    np.log1p(e, out=e)
    t -= e
    return t


class _Rows:
    """The rows' constants: class weights w, label signs s, and [w, w z, w z^2] per row (every
    sum of a Newton step is one batched matmul against it)."""

    def __init__(self, z: np.ndarray, w: np.ndarray, y: np.ndarray, ridge: float) -> None:
        k, n = z.shape
        self.w, self.ridge = w, ridge
        self.sign = np.where(y, 1.0, -1.0)
        m = np.empty((k, 3, n))
        m[:, 0] = w
        np.multiply(z, w, out=m[:, 1])
        np.multiply(m[:, 1], z, out=m[:, 2])
        self.m = m

    def objective(self, lr: np.ndarray, a: np.ndarray) -> np.ndarray:
        """The penalised log-likelihood per row, from `_log_right`."""
        return _dot(lr, self.w) - self.ridge * a * a


def _newton(z: np.ndarray, rows: _Rows, a: np.ndarray, b: np.ndarray, f: np.ndarray, lr: np.ndarray
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`metrics._newton` on every row at once from (a, b), where the objective is f and
    `_log_right` is lr; a row stops when its own step is done, or when the step it would take
    promises less than FTOL / 10 (which saves the last evaluation of most rows). Returns (a, b, f)."""
    k, n = z.shape
    r2, sign = 2.0 * rows.ridge, rows.sign
    out_a, out_b, out_f = a.copy(), b.copy(), f.copy()
    live = np.arange(k)
    zl, ml = z, rows.m
    cq = np.empty((2, k, n))
    for _ in range(100):
        nl = len(live)
        c, q = cq[0, :nl], cq[1, :nl]
        np.exp(lr, out=q)  # the probability of the right label
        np.subtract(1.0, q, out=c)  # of the wrong one
        q *= c  # p (1 - p): the curvature
        c *= sign  # y - p: the gradient is sum w (y - p) (z, 1)
        s = np.matmul(cq[:, :nl].transpose(1, 0, 2), ml.transpose(0, 2, 1)).reshape(nl, 6).T
        ga, gb = s[1] - r2 * a, s[0]
        hzz, hz1, h11 = s[5] + r2, s[4], s[3]  # minus the Hessian
        det = hzz * h11 - hz1 * hz1
        flat = det <= 1e-300
        if flat.any():  # degenerate curvature: gradient ascent
            dd = np.where(flat, 1.0, det)
            sa, sb = np.where(flat, ga, (h11 * ga - hz1 * gb) / dd), np.where(flat, gb, (hzz * gb - hz1 * ga) / dd)
        else:
            sa, sb = (h11 * ga - hz1 * gb) / det, (hzz * gb - hz1 * ga) / det
        # a row whose Newton step would gain (the quadratic model's gain, exact this close to the
        # optimum) under FTOL / 10 has converged: it stops without evaluating that step
        go = flat | (0.5 * (sa * ga + sb * gb) >= 0.1 * FTOL)
        if not go.all():
            if not go.any():
                break
            live, zl, ml = live[go], zl[go], ml[go]
            a, b, f, sa, sb = a[go], b[go], f[go], sa[go], sb[go]
        ca, cb = a + sa, b + sb
        lc = _log_right(zl, sign, ca, cb)
        fc = rows.objective(lc, ca)
        ok = fc >= f - 1e-15
        if ok.all():
            out_a[live], out_b[live], out_f[live] = ca, cb, fc
        else:  # backtracking, per row
            todo, step = np.flatnonzero(~ok), 0.5
            fc[todo] = -np.inf
            while len(todo) and step > 1e-8:
                xa, xb = a[todo] + step * sa[todo], b[todo] + step * sb[todo]
                lt = _log_right(zl[todo], sign, xa, xb)
                fv = rows.objective(lt, xa)
                acc = fv >= f[todo] - 1e-15
                hit = todo[acc]
                ca[hit], cb[hit], fc[hit], lc[hit] = xa[acc], xb[acc], fv[acc], lt[acc]
                todo, step = todo[~acc], step * 0.5
            ok = np.isfinite(fc)  # a row whose backtracking failed stops where it is
            out_a[live[ok]], out_b[live[ok]], out_f[live[ok]] = ca[ok], cb[ok], fc[ok]
        more = ok & (np.maximum(np.abs(ca - a), np.abs(cb - b)) >= 1e-10) & (fc - f >= FTOL)
        if not more.all():
            if not more.any():
                break
            live, zl, ml = live[more], zl[more], ml[more]
            ca, cb, fc, lc = ca[more], cb[more], fc[more], lc[more]
        a, b, f, lr = ca, cb, fc, lc
    return out_a, out_b, out_f


def calibrate_many(r: np.ndarray, label: np.ndarray, ridge: float = RIDGE,
                   start: tuple[float, float] | None = None) -> dict[str, np.ndarray]:
    """`metrics.calibrate` for each row of r (K, n): {"fitness", "alpha", "beta"}, each (K,).

    A row with a non-finite value or no spread scores chance (fitness 0, alpha 0), as one by one;
    every fitness is nan when a class is empty. `start`: one (alpha, beta) every row's solve
    starts from where it is better than (0, 0) (the optimum does not depend on it)."""
    r = np.asarray(r, np.float64)
    y = np.asarray(label).astype(bool)
    k = r.shape[0]
    out = {"fitness": np.zeros(k), "alpha": np.zeros(k), "beta": np.zeros(k)}
    if not y.any() or y.all():
        out["fitness"][:] = np.nan
        return out
    w = class_weights(y)
    with np.errstate(all="ignore"):
        hi, lo = r.max(axis=1), r.min(axis=1)  # NaN anywhere makes both NaN, inf one of them
        finite = np.isfinite(hi) & np.isfinite(lo)
        big = np.maximum(np.abs(hi), np.abs(lo))  # the largest magnitude
        spread = (hi - lo) > 1e-12 * big
        # the slope in alpha at (0, 0), the best point with alpha = 0 (each class weighs 1/2): a
        # row where it is <= 0 has its (concave) optimum at alpha <= 0, which is chance
        rising = _dot(r, np.where(y, w, -w)) > 0.0
    ok = np.flatnonzero(finite & spread & rising)
    if not len(ok):
        return out
    rk = r[ok]
    centre, scale = _quantiles(rk, y)
    tiny = ~(scale > 1e-12 * big[ok])
    if tiny.any():  # no interquartile spread: the class-balanced standard deviation
        rt = rk[tiny]
        mean = rt @ w / w.sum()
        scale[tiny] = np.sqrt(((rt - mean[:, None]) ** 2) @ w / w.sum())
    z = (rk - centre[:, None]) / scale[:, None]
    rows = _Rows(z, w, y, ridge)
    m = len(ok)
    a, b = np.zeros(m), np.zeros(m)
    f = np.full(m, -LN2 * float(w.sum()))  # at (0, 0) every sigma is 1/2
    lr: np.ndarray | None = None
    if start is not None and all(math.isfinite(v) for v in start) and start[0] > 0.0:
        wa, wb = np.full(m, float(start[0])), np.full(m, float(start[1]))
        lw = _log_right(z, rows.sign, wa, wb)
        fw = rows.objective(lw, wa)
        better = fw > f
        if better.all():
            a, b, f, lr = wa, wb, fw, lw
        elif better.any():
            lw[~better] = -LN2
            a[better], b[better], f[better], lr = wa[better], wb[better], fw[better], lw
    if lr is None:
        lr = np.full(z.shape, -LN2)
    a, b, f = _newton(z, rows, a, b, f, lr)
    pos = a > 0.0  # alpha <= 0 is chance (the constrained optimum)
    ll = f + ridge * a ** 2  # the reported log-likelihood excludes the penalty
    out["fitness"][ok] = np.where(pos, np.clip(1.0 + ll / LN2, 0.0, 1.0), 0.0)
    out["alpha"][ok] = np.where(pos, a, 0.0)
    out["beta"][ok] = np.where(pos, b, 0.0)
    return out
