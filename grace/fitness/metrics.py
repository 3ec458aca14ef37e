"""GRACE's offline objective and the metrics reported beside it (pure numpy, no I/O).

The objective
-------------
GRACE (arXiv 2510.02180) scores a reward r with an AIRL-style discriminator

    D_r(s) = exp r(s) / (exp r(s) + pi(a|s)),
    f(r)   = E_{S_e}[log D_r(s)] + E_{S_n}[log(1 - D_r(s))].

Offline there is no policy, so pi is a constant and D_r(s) = sigma(r(s) - log pi). Taken
literally that objective depends on the arbitrary scale and offset of r (a program could win
by multiplying its reward by 100). We use the *calibrated* form instead: the best logistic
calibration of r,

    LL(r) = max_{alpha > 0, beta}  0.5 * mean_{S_e} log sigma(alpha r + beta)
                                 + 0.5 * mean_{S_n} log(1 - sigma(alpha r + beta)),

i.e. -log pi is absorbed into beta and the temperature alpha is fitted too. The two classes get
equal total weight (goal tasks have one positive per successful episode against thousands of
negatives). alpha is constrained positive, so a reward that ranks negatives *above* positives
scores chance, not a flipped win. We report

    fitness = 1 + LL / ln 2   in [0, 1]:  0 = chance (or worse), 1 = perfect separation.

Solving it: r is standardised first (class-balanced median and interquartile range), then a
2-parameter Newton method with backtracking runs on (alpha, beta) with a tiny L2 penalty
`RIDGE * alpha**2` so that perfectly separable data has a finite optimum. Because the penalty
acts on the standardised reward, the result is invariant to r -> c*r + d for any c > 0 (the
penalty cannot be gamed by inflating the scale of r). The reported LL excludes the penalty.
The objective is concave, so if the unconstrained optimum has alpha < 0 the constrained one is
alpha = 0, beta = 0, i.e. fitness 0.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

RIDGE = 1e-5
"""L2 penalty on the calibration temperature (in standardised-reward units)."""
LN2 = math.log(2.0)
QTOL = 1e-9
"""Quantiles of the standardisation take the first value whose cumulative class-balanced weight
reaches q to within this relative tolerance: with balanced weights an exact tie is common (a
0/1 reward that separates perfectly puts exactly half the weight on each value) and must not
be decided by the summation order's last bit."""


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n of x, ties sharing their average rank (scipy.stats.rankdata's "average"
    method; kept here so the sandbox workers need not import scipy.stats, ~0.9 s each)."""
    x = np.asarray(x, np.float64).ravel()
    n = len(x)
    if n == 0:
        return np.zeros(0)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    starts = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1]])
    ends = np.r_[starts[1:], n]  # each tie group holds ranks starts+1 .. ends
    avg = (starts + 1 + ends) / 2.0
    out = np.empty(n)
    out[order] = np.repeat(avg, ends - starts)
    return out


def class_weights(label: np.ndarray) -> np.ndarray:
    """Per-example weights giving each class a total weight of 0.5."""
    y = np.asarray(label).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    return np.where(y, 0.5 / max(n_pos, 1), 0.5 / max(n_neg, 1))


def is_constant(r: np.ndarray) -> bool:
    """True when r carries no ranking information (up to float64 rounding)."""
    r = np.asarray(r, np.float64)
    return r.size == 0 or float(np.ptp(r)) <= 1e-12 * float(np.max(np.abs(r)))


def _grouped(r: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of r (sorted) with the class-balanced weight of positives and negatives
    at each. Rewards often take few distinct values, which makes the Newton steps cheap."""
    w = class_weights(y)
    order = np.argsort(r, kind="stable")  # the order within a group does not change the sums (equal weights per class); stable sorts faster here
    rs = r[order]
    starts = np.flatnonzero(np.r_[True, rs[1:] != rs[:-1]])
    wp = np.add.reduceat(np.where(y[order], w[order], 0.0), starts)
    wn = np.add.reduceat(np.where(y[order], 0.0, w[order]), starts)
    return rs[starts], wp, wn


def _robust_centre_scale(u: np.ndarray, wu: np.ndarray) -> tuple[float, float]:
    cum = np.cumsum(wu)

    def quantile(q: float) -> float:
        return float(u[min(int(np.searchsorted(cum, q * cum[-1] * (1.0 - QTOL), side="left")), len(u) - 1)])

    centre, scale = quantile(0.5), quantile(0.75) - quantile(0.25)
    if not scale > 1e-12 * float(np.max(np.abs(u))):
        mean = float(np.sum(wu * u) / cum[-1])
        scale = float(np.sqrt(np.sum(wu * (u - mean) ** 2) / cum[-1]))
    return centre, scale


def standardise(r: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(z, centre, scale) with z = (r - centre) / scale, from class-balanced robust statistics.

    centre is the class-balanced median and scale the class-balanced interquartile range
    (falling back to the balanced standard deviation when the IQR is 0). Robust statistics
    matter because the calibration penalty acts on z: with a standard deviation, one rare
    "-1000 when the pole falls" negative would shrink the class gap in z units and the penalty
    would then cost a perfectly separating reward most of its fitness. Both statistics move
    with r under r -> c*r + d (c > 0), so z, and hence the fitness, does not.
    """
    r = np.asarray(r, np.float64)
    u, wp, wn = _grouped(r, np.asarray(label).astype(bool))
    centre, scale = _robust_centre_scale(u, wp + wn)
    return (r - centre) / scale, centre, scale


def _at(z: np.ndarray, wp: np.ndarray, wn: np.ndarray, theta: np.ndarray, ridge: float) -> tuple[float, np.ndarray]:
    """(penalised log-likelihood, sigma(t)) at theta, from one exp and one log1p per value."""
    t = theta[0] * z + theta[1]
    e = np.exp(-np.abs(t))
    ls = np.minimum(t, 0.0) - np.log1p(e)
    p = np.where(t >= 0.0, 1.0, e) / (1.0 + e)
    return float(np.dot(wp, ls) + np.dot(wn, ls - t)) - ridge * float(theta[0]) ** 2, p


def _newton(z: np.ndarray, wp: np.ndarray, wn: np.ndarray, ridge: float, theta: np.ndarray,
            f: float, p: np.ndarray) -> tuple[np.ndarray, float]:
    """Maximise the (concave) penalised log-likelihood from `theta` (where it is `f`, sigma(t) `p`):
    Newton steps with backtracking; (theta, the penalised log-likelihood there)."""
    for _ in range(100):
        g_i = wp * (1.0 - p) - wn * p
        h_i = (wp + wn) * p * (1.0 - p)
        grad = np.array([np.dot(g_i, z) - 2 * ridge * theta[0], g_i.sum()])
        hzz, hz1, h11 = np.dot(h_i, z * z) + 2 * ridge, np.dot(h_i, z), h_i.sum()
        det = hzz * h11 - hz1 * hz1
        if det <= 1e-300:
            step = grad  # degenerate curvature: gradient ascent
        else:
            step = np.array([h11 * grad[0] - hz1 * grad[1], hzz * grad[1] - hz1 * grad[0]]) / det
        lr = 1.0
        while lr > 1e-8:
            cand = theta + lr * step
            fc, pc = _at(z, wp, wn, cand, ridge)
            if fc >= f - 1e-15:
                break
            lr *= 0.5
        else:
            break
        done = float(np.max(np.abs(cand - theta))) < 1e-10 or fc - f < 1e-14
        theta, f, p = cand, fc, pc
        if done:
            break
    return theta, f


def calibrate(r: np.ndarray, label: np.ndarray, ridge: float = RIDGE,
              start: tuple[float, float] | None = None) -> dict[str, float]:
    """Fit the calibration sigma(alpha * z + beta), z = standardised r.

    Returns {"fitness", "loglik", "alpha", "beta", "centre", "scale"} (alpha, beta act on z =
    (r - centre) / scale). fitness is nan when one class is empty, 0 for a constant or
    non-finite r (callers that must not hide NaN rewards check for them first, as
    `grace.fitness.offline.evaluate` does). `start`: (alpha, beta) to start the Newton solve
    from (a previous solution on a similar reward, as PARAMS fitting passes), used when it is
    better than (0, 0); the objective is concave, so the optimum is the same either way (up to
    the solver's 1e-10 tolerance) and only the number of iterations changes.
    """
    r = np.asarray(r, np.float64)
    y = np.asarray(label).astype(bool)
    chance = {"fitness": 0.0, "loglik": -LN2, "alpha": 0.0, "beta": 0.0, "centre": 0.0, "scale": 1.0}
    if not y.any() or y.all():
        return {**chance, "fitness": float("nan"), "loglik": float("nan")}
    if not np.all(np.isfinite(r)) or is_constant(r):
        return chance
    u, wp, wn = _grouped(r, y)
    centre, scale = _robust_centre_scale(u, wp + wn)
    z = (u - centre) / scale
    # at (0, 0) every sigma is 1/2 and the log-likelihood -ln 2 (the weights sum to 1)
    theta, f, p = np.zeros(2), -LN2 * float(wp.sum() + wn.sum()), np.full(len(z), 0.5)
    if start is not None and all(math.isfinite(v) for v in start) and start[0] > 0.0:
        warm = np.array(start, np.float64)
        fw, pw = _at(z, wp, wn, warm, ridge)
        if fw > f:
            theta, f, p = warm, fw, pw
    theta, f = _newton(z, wp, wn, ridge, theta, f, p)
    if theta[0] <= 0.0:
        return {**chance, "centre": centre, "scale": scale}
    ll = f + ridge * float(theta[0]) ** 2  # the reported log-likelihood excludes the penalty
    fit = min(1.0, max(0.0, 1.0 + ll / LN2))
    return {"fitness": fit, "loglik": ll, "alpha": float(theta[0]), "beta": float(theta[1]),
            "centre": centre, "scale": scale}


def fitness(r: np.ndarray, label: np.ndarray) -> float:
    """GRACE calibrated fitness `1 + LL / ln 2` in [0, 1] (see the module docstring)."""
    return calibrate(r, label)["fitness"]


def auc(r: np.ndarray, label: np.ndarray) -> float:
    """P(r(pos) > r(neg)) over all positive/negative pairs, ties counting half; nan if a class is empty."""
    r = np.asarray(r, np.float64)
    y = np.asarray(label).astype(bool)
    return auc_pos_neg(r[y], r[~y])


def auc_pos_neg(vp: np.ndarray, vn: np.ndarray, empty: float = float("nan")) -> float:
    """AUC of positive scores `vp` against negative scores `vn` (ties count half); `empty` if a
    class has no scores. The one AUC of grace (fitness metrics and the offline operator)."""
    n_pos, n_neg = len(vp), len(vn)
    if n_pos == 0 or n_neg == 0:
        return empty
    ranks = rankdata(np.concatenate([np.asarray(vp, np.float64), np.asarray(vn, np.float64)]))
    return float((ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def best_threshold(r: np.ndarray, label: np.ndarray) -> tuple[float, float]:
    """(threshold, balanced accuracy) of the rule `expert iff r > threshold` that is best on (r, label).

    Candidates are -inf and the midpoints between consecutive distinct values,
    so the rule transforms with r under r -> c*r + d (c > 0). Ties keep the lowest threshold.
    """
    r = np.asarray(r, np.float64)
    y = np.asarray(label).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("-inf"), float("nan")
    uniq, inv = np.unique(r, return_inverse=True)
    pos_le = np.cumsum(np.bincount(inv, weights=y, minlength=len(uniq)))
    neg_le = np.cumsum(np.bincount(inv, weights=~y, minlength=len(uniq)))
    # candidate k = -1 (all positive), k = 0..U-1 (positive iff r > uniq[k])
    tpr = np.concatenate([[n_pos], n_pos - pos_le]) / n_pos
    tnr = np.concatenate([[0.0], neg_le]) / n_neg
    bal = 0.5 * (tpr + tnr)
    k = int(np.argmax(bal)) - 1
    if k < 0:
        thr = float("-inf")
    elif k == len(uniq) - 1:  # "nothing is expert": never strictly better than -inf
        thr = float("inf")
    else:
        thr = float(0.5 * (uniq[k] + uniq[k + 1]))
    return thr, float(bal[k + 1])


def balanced_accuracy(r: np.ndarray, label: np.ndarray, threshold: float) -> float:
    """Class-balanced accuracy of `expert iff r > threshold`; nan if a class is empty.

    A value equal to the threshold up to rounding counts half right (as ties do in the AUC),
    so the result does not hinge on the last bit of r -> c*r + d.
    """
    r = np.asarray(r, np.float64)
    y = np.asarray(label).astype(bool)
    if not y.any() or y.all():
        return float("nan")
    tol = 1e-9 * max(float(np.max(np.abs(r))), abs(threshold) if math.isfinite(threshold) else 0.0)
    pred = np.where(r > threshold + tol, 1.0, np.where(r < threshold - tol, 0.0, 0.5))
    return float(0.5 * (pred[y].mean() + (1.0 - pred[~y]).mean()))


def trajectory_ranking(r: np.ndarray, episode: np.ndarray, expert: np.ndarray) -> float:
    """Fraction of (expert episode, negative episode) pairs where the expert episode's MEAN
    reward is higher (ties count half). Means, not sums, so episode length cannot leak."""
    r = np.asarray(r, np.float64)
    ep = np.asarray(episode)
    if r.size == 0:
        return float("nan")
    ids, inv = np.unique(ep, return_inverse=True)
    means = np.bincount(inv, weights=r) / np.bincount(inv)
    is_exp = np.bincount(inv, weights=np.asarray(expert, np.float64)) > 0
    e, n = np.sort(means[is_exp]), np.sort(means[~is_exp])
    if e.size == 0 or n.size == 0:
        return float("nan")
    # means equal up to rounding are ties; rounding scales with the summed rewards, not the means
    # (two episodes whose rewards cancel to a mean of 0 must tie after r -> c * r)
    tol = 1e-9 * float(np.max(np.abs(r)))
    below = np.searchsorted(n, e - tol, side="left")
    equal = np.searchsorted(n, e + tol, side="right") - below
    return float((below.sum() + 0.5 * equal.sum()) / (e.size * n.size))


def metrics(
    r: np.ndarray,
    label: np.ndarray,
    episode: np.ndarray,
    train: np.ndarray,
    expert: np.ndarray | None = None,
    calibrated: dict[str, float] | None = None,
) -> dict[str, float]:
    """Fitness, accuracy, AUC and trajectory ranking on the train and held-out splits.

    - fitness: `fitness` on each split. The held-out value re-fits only the 2 calibration
      numbers (alpha, beta), which cannot memorise; the reward's logic and PARAMS saw train only.
    - accuracy: class-balanced, threshold chosen on train and applied unchanged to held-out.
    - auc: ranking AUC (ties half); trajectory ranking: see `trajectory_ranking`.
    - `expert` marks transitions of expert episodes (default: episodes with any positive).
    Every value is a float; a split without both classes gives nan for what needs both.
    `calibrated`: `calibrate(r[train], label[train])` when the caller made it already.
    """
    r = np.asarray(r, np.float64)
    y = np.asarray(label).astype(bool)
    ep = np.asarray(episode)
    tr = np.asarray(train).astype(bool)
    if expert is None:
        expert = np.isin(ep, np.unique(ep[y]))
    expert = np.asarray(expert).astype(bool)
    thr, acc_train = best_threshold(r[tr], y[tr])
    out: dict[str, Any] = {}
    for name, m in (("train", tr), ("heldout", ~tr)):
        if name == "train" and calibrated is not None:
            out["fitness_train"] = calibrated["fitness"]
        else:
            out[f"fitness_{name}"] = fitness(r[m], y[m]) if m.any() else float("nan")
        out[f"auc_{name}"] = auc(r[m], y[m])
        out[f"traj_ranking_{name}"] = trajectory_ranking(r[m], ep[m], expert[m])
        out[f"n_pos_{name}"] = float(y[m].sum())
        out[f"n_neg_{name}"] = float((~y[m]).sum())
    out["accuracy_train"] = acc_train
    out["accuracy_heldout"] = balanced_accuracy(r[~tr], y[~tr], thr)
    return {k: float(v) for k, v in out.items()}
