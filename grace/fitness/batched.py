"""Running a compiled reward over a dataset: chunked calls, components as rows, finiteness."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grace.config import FitSettings

CompiledReward = Callable[[np.ndarray, Any, np.ndarray, dict[str, float]], Any]


def call_reward(compiled: CompiledReward, data: dict[str, np.ndarray], params: dict[str, float],
                chunk: int | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Rewards (float64, (N,)) and components (each broadcast to (N,) or (N, k)), in chunks of
    `chunk` transitions (default `fit.chunk`)."""
    n = len(data["s"])
    size = int(chunk or FitSettings().chunk)
    totals, comps = [], []
    for lo in range(0, max(n, 1), size):
        s, a, s2 = data["s"][lo : lo + size], data["a"][lo : lo + size], data["s_next"][lo : lo + size]
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


def check_finite(r: np.ndarray) -> None:
    bad = int(np.sum(~np.isfinite(r)))
    if bad:
        n_nan = int(np.sum(np.isnan(r)))
        raise ValueError(f"reward is non-finite on {bad} of {len(r)} transitions ({n_nan} NaN, {bad - n_nan} inf)")
