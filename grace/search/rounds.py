"""Rounds never make things worse (GRACE's outer loop, issue "Few demos").

Every round's winner keeps the PPO expert-likeness that chose it (ppo_select's record; its
discriminator is fitted on round 0's data, so rounds compare), the run's answer is the winner of the
best round so far, and a round that does not improve on every round before it stops the search
(`active.stop_when_worse`). Measured motivation: with active negatives the best reward of later
rounds trained worse on fixed-horizon CartPole (496 -> 293 -> 42; benchmarks/results/active_rounds.md).
"""

from __future__ import annotations

from typing import Any

from grace.config import EvolveConfig
from grace.search.archive import Archive


def winner_likeness(record: dict[str, Any] | None) -> float | None:
    """The expert-likeness of the policy PPO trained on a round's winner (None: not measured)."""
    if not record:
        return None
    for cand in record.get("candidates", []):
        if cand.get("row") == record.get("winner"):
            return cand.get("expert_likeness")
    return None


def _likeness(archive: Archive, upto: int) -> list[tuple[int, int, float]]:
    from grace.search.ppo_select import meta_key

    out = []
    for rnd in range(upto + 1):
        record = archive.get_meta(meta_key(rnd))
        if (like := winner_likeness(record)) is not None:
            out.append((rnd, int(record["winner"]), float(like)))  # type: ignore[index]
    return out


def best_round(archive: Archive, upto: int) -> tuple[int, int] | None:
    """(round, winner row) of the round up to `upto` whose winner's policy is the most expert-like
    (ties: the earlier round); None when no round was measured."""
    rows = _likeness(archive, upto)
    if not rows:
        return None
    rnd, row, _ = max(rows, key=lambda x: (x[2], -x[0]))
    return rnd, row


def stop_reason(archive: Archive, rnd: int, cfg: EvolveConfig) -> str:
    """Why the search stops after round `rnd` ("" to go on): with `active.stop_when_worse`, its
    winner is no more expert-like than the best round before it."""
    if not cfg.active.stop_when_worse or rnd < 1:
        return ""
    rows = {r: like for r, _, like in _likeness(archive, rnd)}
    before = [like for r, like in rows.items() if r < rnd]
    if rnd not in rows or not before or rows[rnd] > max(before):
        return ""
    return (f"round {rnd} did not improve: its winner's policy is {rows[rnd]:.3f} expert-like, round "
            f"{max((r for r in rows if r < rnd), key=lambda r: rows[r])} reached {max(before):.3f}")
