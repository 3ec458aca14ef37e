"""The batched calibration as it was before the speed-up of grace/fitness/calibrate_many.py
(commit 85c0987), kept verbatim for benchmarks/loop_speed.py, which refits the same programs
with it and with the current one and compares the PARAMS they find. Not used by grace itself.

`calibrate` for many rewards at once: K rows of rewards on the same labelled rows, one solve.

The batched PARAMS search (grace/fitness/params_batched.py) scores K parameter settings of one
program per reward call on ~1000 rows; calibrating the K rows one by one would spend most of its
time in per-call numpy overhead (a Newton step is ~15 small array operations). Here every step
acts on a (K, n) array and the rows that have converged drop out. The objective, the
standardisation (class-balanced median and interquartile range; the class-balanced standard
deviation when the IQR is 0), the ridge, the Newton step with backtracking and its stopping rule
are those of `grace.fitness.metrics.calibrate`, so each row's fitness equals
`calibrate(row, label)["fitness"]` up to float rounding (tests/fitness/test_calibrate_many.py).
Rows are not grouped by distinct value as the one-by-one solver does: on wide arrays the grouping
costs more than it saves.
"""

from __future__ import annotations

import math

import numpy as np

from grace.fitness.metrics import LN2, QTOL, RIDGE, class_weights

FTOL = 1e-10
"""A row's solve stops when a Newton step gains less than this (as `metrics._newton`)."""


def _quantiles(r: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (class-balanced median, interquartile range), read off the cumulative weights as
    `metrics._robust_centre_scale` does (the first value whose cumulative weight reaches q)."""
    order = np.argsort(r, axis=1, kind="stable")
    rs = np.take_along_axis(r, order, axis=1)
    cum = np.cumsum(w[order], axis=1)
    rows = np.arange(len(r))

    def q(p: float) -> np.ndarray:
        return rs[rows, np.argmax(cum >= p * cum[:, -1:] * (1.0 - QTOL), axis=1)]

    return q(0.5), q(0.75) - q(0.25)


def _at(z: np.ndarray, wp: np.ndarray, wn: np.ndarray, theta: np.ndarray, ridge: float
        ) -> tuple[np.ndarray, np.ndarray]:
    """Per row: (penalised log-likelihood, sigma(t)) at theta (K, 2)."""
    t = theta[:, :1] * z + theta[:, 1:]
    e = np.exp(-np.abs(t))
    ls = np.minimum(t, 0.0) - np.log1p(e)
    p = np.where(t >= 0.0, 1.0, e) / (1.0 + e)
    return ls @ wp + (ls - t) @ wn - ridge * theta[:, 0] ** 2, p


def _newton(z: np.ndarray, wp: np.ndarray, wn: np.ndarray, ridge: float, theta: np.ndarray,
            f: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`metrics._newton` on every row at once; a row stops when its own step is done, or when the
    step it would take promises less than FTOL / 10 (which saves the last evaluation of most rows)."""
    theta, f = theta.copy(), f.copy()
    live = np.arange(len(z))
    w = wp + wn
    for _ in range(100):
        if not len(live):
            break
        zl, th, fl = z[live], theta[live], f[live]
        g = wp * (1.0 - p) - wn * p
        h = w * p * (1.0 - p)
        grad = np.stack([np.einsum("kn,kn->k", g, zl) - 2 * ridge * th[:, 0], g.sum(axis=1)], axis=1)
        hz = h * zl
        hzz, hz1, h11 = np.einsum("kn,kn->k", hz, zl) + 2 * ridge, hz.sum(axis=1), h.sum(axis=1)
        det = hzz * h11 - hz1 * hz1
        flat = det <= 1e-300
        newton = np.stack([h11 * grad[:, 0] - hz1 * grad[:, 1], hzz * grad[:, 1] - hz1 * grad[:, 0]],
                          axis=1) / np.where(flat, 1.0, det)[:, None]
        step = np.where(flat[:, None], grad, newton)  # degenerate curvature: gradient ascent
        cand, fc, pc = th.copy(), np.full(len(live), -np.inf), np.empty_like(p)
        # a row whose Newton step would gain (the quadratic model's gain, exact this close to the
        # optimum) under FTOL / 10 has converged: it stops without evaluating that step
        todo, lr = np.flatnonzero(flat | (0.5 * np.einsum("kd,kd->k", step, grad) >= 0.1 * FTOL)), 1.0
        while len(todo) and lr > 1e-8:  # backtracking, per row
            c = th[todo] + lr * step[todo]
            fv, pv = _at(zl[todo], wp, wn, c, ridge)
            ok = fv >= fl[todo] - 1e-15
            acc = todo[ok]
            cand[acc], fc[acc], pc[acc] = c[ok], fv[ok], pv[ok]
            todo, lr = todo[~ok], lr * 0.5
        moved = np.isfinite(fc)  # a row whose backtracking failed stops where it is
        done = ~moved | (np.max(np.abs(cand - th), axis=1) < 1e-10) | (fc - fl < FTOL)
        theta[live[moved]], f[live[moved]] = cand[moved], fc[moved]
        live, p = live[~done], pc[~done]
    return theta, f


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
    with np.errstate(all="ignore"):
        finite = np.isfinite(r).all(axis=1)
        spread = (r.max(axis=1) - r.min(axis=1)) > 1e-12 * np.max(np.abs(r), axis=1)
    ok = np.flatnonzero(finite & spread)
    if not len(ok):
        return out
    w = class_weights(y)
    rk = r[ok]
    centre, scale = _quantiles(rk, w)
    tiny = ~(scale > 1e-12 * np.max(np.abs(rk), axis=1))
    if tiny.any():  # no interquartile spread: the class-balanced standard deviation
        rt = rk[tiny]
        mean = rt @ w / w.sum()
        scale[tiny] = np.sqrt(((rt - mean[:, None]) ** 2) @ w / w.sum())
    z = (rk - centre[:, None]) / scale[:, None]
    wp, wn = np.where(y, w, 0.0), np.where(y, 0.0, w)
    theta = np.zeros((len(ok), 2))
    f = np.full(len(ok), -LN2 * float(w.sum()))  # at (0, 0) every sigma is 1/2
    p = np.full(z.shape, 0.5)
    if start is not None and all(math.isfinite(v) for v in start) and start[0] > 0.0:
        warm = np.tile(np.asarray(start, np.float64), (len(ok), 1))
        fw, pw = _at(z, wp, wn, warm, ridge)
        better = fw > f
        theta[better], f[better], p[better] = warm[better], fw[better], pw[better]
    theta, f = _newton(z, wp, wn, ridge, theta, f, p)
    pos = theta[:, 0] > 0.0  # alpha <= 0 is chance (the constrained optimum)
    ll = f + ridge * theta[:, 0] ** 2  # the reported log-likelihood excludes the penalty
    out["fitness"][ok] = np.where(pos, np.clip(1.0 + ll / LN2, 0.0, 1.0), 0.0)
    out["alpha"][ok] = np.where(pos, theta[:, 0], 0.0)
    out["beta"][ok] = np.where(pos, theta[:, 1], 0.0)
    return out
