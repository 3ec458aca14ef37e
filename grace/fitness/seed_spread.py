"""Seeds that lag: when PPO on a reward learns on some seeds and not on others, what do the others do?

A reward can teach on most PPO seeds and fail on a few: the fixed-horizon CartPole winner of
quality23 balanced on 15 of 20 seeds; on the other 5 the pole spun or swung below the cart,
where its Gaussian bump around upright pays nothing (benchmarks/results/quality23/notes.md). A
mean and a standard deviation over seeds hide that; these helpers show it:

- `late_field_means`: per seed, the mean |value| of each observation field over the second half
  of the final policy's episodes (where a policy ends up, not how it started). Every PPOResult
  carries it (`PPOResult.late_fields`).
- `lagging_seeds`: which seeds fall well short of the best one (the returns split at the midpoint
  between the worst and the best seed, when the two ends are far apart).
- `lag_report`: those seeds and the fields whose late values differ most from the other seeds'.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

GAP = 0.25
"""The worst and the best seed must be this far apart, as a share of the scale (true-reward PPO's
gain over the untrained policy where known, else the larger |return|), before seeds count as
lagging: closer, the spread is ordinary seed noise."""

TOP_FIELDS = 3
"""Fields `lag_report` names: those whose late |value| differs most between the two groups."""


def late_field_means(episodes: Sequence[Any], seeds: int, columns: Mapping[str, int | list[int]]) -> list[dict[str, float]]:
    """Per seed, the mean |value| of each observation field over the second half of each episode's
    states. `episodes` come seed by seed, as many per seed (`obs` of shape (T + 1, width));
    `columns`: a field's column or columns (`ObsSchema.index_map`; a vector field is averaged)."""
    per = len(episodes) // seeds if seeds else 0
    out: list[dict[str, float]] = []
    for s in range(seeds):
        group = episodes[s * per:(s + 1) * per]
        if not group:
            out.append({})
            continue
        late = np.abs(np.concatenate([np.asarray(ep.obs, np.float64)[len(ep.obs) // 2:] for ep in group]))
        out.append({name: float(late[:, col].mean()) for name, col in columns.items()})
    return out


def lagging_seeds(returns: Sequence[float], scale: float | None = None) -> list[int]:
    """Indices of the seeds whose return is below the midpoint between the worst and the best seed,
    when those two are at least `GAP` x `scale` apart (`scale`: true-reward PPO's gain over the
    untrained policy, or None: the larger |return| of the two, at least 1). Empty otherwise."""
    r = np.asarray(returns, dtype=np.float64)
    if len(r) < 2 or not np.all(np.isfinite(r)):
        return []
    lo, hi = float(r.min()), float(r.max())
    ref = abs(scale) if scale else max(abs(lo), abs(hi), 1.0)
    if hi - lo < GAP * ref:
        return []
    mid = (lo + hi) / 2
    return [i for i, v in enumerate(r) if v < mid]


def lag_report(returns: Sequence[float], late: Sequence[Mapping[str, float]],
               scale: float | None = None) -> dict[str, Any] | None:
    """The lagging seeds (`lagging_seeds`) with their returns and the others', and the `TOP_FIELDS`
    fields whose mean late |value| differs most (relative difference |a - b| / (a + b)) between
    the lagging seeds and the rest; None when no seed lags."""
    lag = lagging_seeds(returns, scale)
    if not lag:
        return None
    rest = [i for i in range(len(returns)) if i not in lag]
    fields: list[dict[str, float | str]] = []
    if late and all(late[i] for i in range(len(returns))):
        for name in late[0]:
            a = float(np.mean([late[i][name] for i in lag]))
            b = float(np.mean([late[i][name] for i in rest]))
            rel = abs(a - b) / (a + b) if a + b > 0 else 0.0
            fields.append({"field": name, "lagging": a, "others": b, "difference": rel})
        fields.sort(key=lambda f: -float(f["difference"]))
    return {"seeds": lag, "returns": [float(returns[i]) for i in lag],
            "others": [float(returns[i]) for i in rest], "fields": fields[:TOP_FIELDS]}


def describe_lag(report: Mapping[str, Any], n_seeds: int) -> str:
    """One line for people: how many seeds lag, their returns and the others', and how the fields
    that differ most end up on each."""
    fields = ", ".join(f"|{f['field']}| {f['lagging']:.3g} vs {f['others']:.3g}" for f in report["fields"])
    line = (f"{len(report['seeds'])} of {n_seeds} seeds lag (return {_list(report['returns'])} vs "
            f"{_list(report['others'])} on the others)")
    return f"{line}; late in their episodes: {fields}" if fields else line


def _list(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.4g}" for v in values)
