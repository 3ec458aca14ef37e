"""When is one trained policy more expert-like than another? PPO in the loop's noise rule.

PPO in the loop compares policies trained on a few seeds each (`ppo.seeds`, 2 by default), so two
candidates' expert-likeness can differ by seed luck alone: on the Brax inverted pendulum it chose a
dense reward at 0.545 over a top candidate at 0.532 whose policies balanced the whole episode, and
the chosen reward trained worse (benchmarks/results/quality2.md). A difference counts only when it
exceeds `SIGNIFICANCE` standard errors of the difference of the two per-seed means (each seed's
likeness is `PPOResult.irl_per_seed`). Within noise, the leader and the best offline-ranked
candidate it does not beat (the rival) train on `ppo.select_confirm` more seeds when the run allows
them, and if neither then beats the other, a reward whose policies imitated on some seed (reached
`IMITATION_FLOOR` of the expert's own likeness) beats one whose policies never did; else the more
reliably expert-like wins: the higher lower bound
(mean minus `SIGNIFICANCE` standard errors, `lower_bound`), the better offline rank on a tie. A reward
whose policies imitate on some seeds and fail on others teaches less reliably than one whose
policies all imitate a little less: on fixed-horizon CartPole the offline-better rival (0.85 over six
seeds, one at 0.62) beat the leader (0.90, none below 0.79) under the offline-rank tie-break, and one
final PPO seed of five then stopped at 337 of 500 (quality10.md); on BabyAI OpenTwoDoors the rival
(0.21: four of six seeds near 0) beat the leader (0.34, none below 0.23), whose policies finished
0.65 of episodes against 0.51 (babyai4). With one seed there is no spread to weigh against: the more
expert-like wins, as before this rule.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from statistics import fmean, stdev
from typing import Any

SIGNIFICANCE = 2.0
"""Standard errors of the difference a higher expert-likeness must clear to beat another."""

IMITATION_FLOOR = 0.05
"""Below this share of the expert's own expert-likeness (held-out expert states), a policy did not
imitate at all. When every candidate of PPO in the loop stays below it, the choice is blind and the
candidates are compared again with the demos' potential (search/ppo_select.py). When both policies
of the final shaping check stay below it and the one without the potential is not more
expert-like beyond the seed noise (`beats`), the check cannot tell and the potential is kept: potential-based shaping leaves the optimal policy unchanged (Ng et al. 1999) and
is there for exactly the reward PPO cannot learn from unaided. Measured: on terminating MountainCar
the check compared 0.000 with 0.005 without (0.02 of the held-out expert's 0.26) and dropped the
|velocity - c| potential that moved the fixed-horizon row from 0.02 to 0.40 (quality2.md). At 0.1
the rule also kept a tip-height potential on terminating Acrobot whose policies scored 0.000 against
0.049 without (0.09 of the expert's 0.57), and PPO on it never reached the goal (quality3.md's
notes): a policy at a tenth of the expert's likeness already imitates in part."""


def seed_values(result: Any) -> list[float] | None:
    """A PPO result's per-seed expert-likeness (its pooled value as one seed when per-seed values were
    not measured); None when PPO failed or gave no finite score."""
    if not result.ok or result.irl_score is None or not math.isfinite(result.irl_score):
        return None
    per_seed = getattr(result, "irl_per_seed", None)
    vals = [float(v) for v in per_seed] if per_seed else [float(result.irl_score)]
    return vals if all(math.isfinite(v) for v in vals) else None


def stderr(vals: Sequence[float]) -> float:
    """Standard error of the mean of `vals` (0 for one value: no spread to estimate)."""
    return stdev(vals) / math.sqrt(len(vals)) if len(vals) > 1 else 0.0


def beats(a: Sequence[float], b: Sequence[float]) -> bool:
    """Is `a`'s mean expert-likeness higher than `b`'s by more than the noise (module docstring)?"""
    return fmean(a) - fmean(b) > SIGNIFICANCE * math.hypot(stderr(a), stderr(b))


def leader_and_rival(scored: list[dict[str, Any]]) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the most expert-like candidate, the best-ranked offline candidate it does not beat), each a
    record with `likeness_seeds` (per-seed likeness or None) and `offline_rank`; the rival is None when the
    leader beats every candidate ranked above it offline, the leader None when no PPO run scored."""
    ok = [s for s in scored if s["likeness_seeds"]]
    if not ok:
        return None, None
    leader = max(ok, key=lambda s: (fmean(s["likeness_seeds"]), -s["offline_rank"]))
    rivals = [s for s in ok if s["offline_rank"] < leader["offline_rank"] and not beats(leader["likeness_seeds"], s["likeness_seeds"])]
    return leader, min(rivals, key=lambda s: s["offline_rank"]) if rivals else None


def lower_bound(vals: Sequence[float]) -> float:
    """How expert-like a candidate's policies reliably are: the mean per-seed likeness minus
    `SIGNIFICANCE` standard errors."""
    return fmean(vals) - SIGNIFICANCE * stderr(vals)


def compare(a: Sequence[float], b: Sequence[float], floor: Callable[[], float]) -> tuple[bool, str]:
    """Does `a` win over `b`, the default a tie keeps, and on what ground: "noise" (one is more
    expert-like beyond the seed noise), "imitated" (within it, only one reached `floor()` on some
    seed; `floor` is called only then) or "reliable" (the higher `lower_bound`; `b` on a tie).
    The rule of `settle`, which PPO in the loop's payment stage shares."""
    if beats(a, b) or beats(b, a):
        return beats(a, b), "noise"
    level = floor()
    if (max(a) >= level) != (max(b) >= level):
        return max(a) >= level, "imitated"
    return lower_bound(a) > lower_bound(b), "reliable"


_SETTLED = {
    ("noise", True): "the most expert-like policy",
    ("noise", False): "the better offline rank, more expert-like beyond the seed noise",
    ("imitated", True): "the only one of the two whose policies imitated on some seed",
    ("imitated", False): "the better offline rank, the only one of the two whose policies imitated on some seed",
    ("reliable", True): ("within seed noise of the better offline rank and more reliably expert-like "
                         "(higher mean minus 2 standard errors)"),
    ("reliable", False): ("within seed noise of the most expert-like policy and at least as reliably expert-like, "
                          "so the better offline rank"),
}


def settle(leader: dict[str, Any], rival: dict[str, Any], floor: float = 0.0) -> tuple[dict[str, Any], str]:
    """The winner of a leader and its offline-better rival (after more seeds when the run allowed
    them) and why: whichever beats the other beyond the noise; else the one whose policies imitated
    (reached `floor`, `IMITATION_FLOOR` of the expert's own likeness) on some seed when the other's
    never did: the lower bound of a reward that never teaches is not reliability (on BabyAI
    OpenTwoDoors a rival at 0 on six seeds beat a leader that imitated on one, and PPO on it never
    opened a door; babyai7); else the higher `lower_bound`, the rival (better offline rank) on a tie
    (`compare`)."""
    won, ground = compare(leader["likeness_seeds"], rival["likeness_seeds"], lambda: floor)
    return (leader if won else rival), _SETTLED[ground, won]
