"""PARAMS as a search space, shared by the sequential and the batched PARAMS search: the moves,
the rounding the file stores, and the class-stratified subsample of train rows they score on."""

from __future__ import annotations

import numpy as np

from grace.program import COST_PREFIX


def fit_subsample(data: dict[str, np.ndarray], rng: np.random.Generator, size: int) -> np.ndarray:
    """Train rows, at most `size`, keeping up to half the budget for each class."""
    y, train = data["label"].astype(bool), data["train"]
    pos, neg = np.flatnonzero(train & y), np.flatnonzero(train & ~y)
    k_pos = min(len(pos), max(size // 2, size - len(neg)))
    k_neg = min(len(neg), size - k_pos)
    pick = [rng.choice(ix, size=k, replace=False) if len(ix) > k else ix
            for ix, k in ((pos, k_pos), (neg, k_neg))]
    return np.sort(np.concatenate(pick))


def round_param(value: float) -> float:
    """4 significant digits: what `RewardProgram.with_params` writes, so the file rescores the same."""
    return float(f"{value:.4g}")


class ParamSpace:
    """PARAMS as a search space. A point u moves each value v additively as v + u * |v| (u * 1
    for a value near zero), so a location (threshold, centre) can cross zero, e.g. a threshold
    initialised at -0.3 can reach a goal at +0.5 (multiplicative, sign-preserving moves never
    could), and a weight may flip sign when that separates better. Cost weights (`cost_...`) are
    the exception: they stay >= 0 (the contract's rule). Values are rounded as the file stores
    them (`round_param`)."""

    def __init__(self, params: dict[str, float]) -> None:
        self.names = list(params)
        self.v0 = np.array([params[k] for k in self.names], np.float64)
        self.unit = np.where(np.abs(self.v0) > 1e-3, np.abs(self.v0), 1.0)
        self.costs = np.array([k.startswith(COST_PREFIX) for k in self.names], bool)

    def values(self, u: np.ndarray) -> np.ndarray:
        """The rounded values at u (d,) or at each row of u (K, d)."""
        vals = self.v0 + self.unit * np.clip(u, -50, 50)
        vals = np.where(self.costs, np.maximum(vals, 0.0), vals)
        return np.array([float(f"{v:.4g}") for v in vals.ravel().tolist()]).reshape(vals.shape)  # round_param

    def decode(self, u: np.ndarray) -> dict[str, float]:
        return dict(zip(self.names, self.values(u).tolist(), strict=True))
