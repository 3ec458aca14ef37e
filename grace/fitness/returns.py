"""Whole episodes under a candidate reward: the terminal value and the episode-return margin.

A reward that separates expert from non-expert *states* can still fail to teach: if most states
score below zero, ending the episode early pays, and a random policy can out-earn the expert.
Two pieces fix what the per-state objective (`grace.fitness.metrics`) cannot see:

The terminal value (`PARAMS["terminal"]`)
    An episode that terminates (not truncated by a time limit) enters an absorbing state, as in
    Discriminator-Actor-Critic (Kostrikov et al. 2019). Staying there forever at a per-step reward
    `r_abs` is worth `gamma * r_abs / (1 - gamma)` from the terminating transition: the terminal
    value the file holds. `r_abs` is learned with the rest, from the data: the lowest reward seen
    ("ending is as bad as the worst state", when the negatives terminate: falling over) or the
    highest ("as good as the best", when the experts terminate: reaching a goal), whichever
    ranks expert episodes above negative episodes more often (ties: by who terminates more).

    How it is paid (`payment`, `applied_reward`): every step pays `r - c` and the terminating
    transition pays the rest, `gamma * (r_abs - c) / (1 - gamma)`, as a lump, where the shift `c` is
    the lower of `r_abs` and the lowest reward the data saw (`PARAMS["floor"]`, fitted with the
    terminal value). Any constant `c` gives the same optimal policy (it is paid in every state,
    the absorbing one included); this one makes every payment >= 0 on the data, and the reward's
    offset (which the calibrated objective cannot pin down) no longer matters:
    - When ending is as bad as the worst state (falling over), `c = r_abs`: every step pays
      `r - r_abs` and an ended episode is worth 0, as every RL library values one. Paid as the
      lump on the terminating transition instead, the CartPole winner of quality13 (-699.5; most
      states below 0) trained to 500 steps on 7 of 10 PPO seeds; shifted, on 10 of 10 (true
      reward: 7 of 10; benchmarks/results/shifted.md).
    - When ending is as good as the best state (reaching a goal), `c` is the floor: steps pay
      `r - floor >= 0` and reaching the goal pays the lump. Shifted by `r_abs` instead, the goal
      bonus is a living penalty: the babyai9 OpenTwoDoors winner trained to 0.60 success that way
      vs 1.00 this way, MountainCar's quality16 winner to 0.60 vs 0.975 (the same files, one batch
      each; benchmarks/results/payment.md). Not every reward prefers it: fixed-horizon Acrobot's
      0/1 indicator (the env never terminates, so only the steps' sign changes) trained better
      as {-1, 0} than as {0, 1}.
    An episode cut by a time limit is worth 0 after the cut, as rejax's PPO (and SB3's by default)
    treats a timeout: the returns grace ranks are the ones PPO learns from. A file without a floor
    (written before it existed, or by hand) is paid `c = r_abs`.

Potential-based shaping (`potential(s, p)`; Ng, Harada & Russell 1999)
    A program may define a potential Phi; the reward applied everywhere (PPO, `grace eval`, the
    exports) is `r - c + lump * terminated + gamma * Phi(s') * (1 - terminated) - Phi(s)`
    (`applied_reward`):
    the absorbing state has Phi = 0, so optimal policies are those of `r` alone. Along an episode the shaping telescopes to `-Phi(s_0)` (plus
    `gamma^T Phi(s_T)` when truncated). `potential_metrics` says whether Phi rises along expert
    episodes (rank correlation with time) and stays above negative episodes at equal time.

The episode-return margin (Abbeel & Ng 2004; Ratliff et al. 2006)
    Under the applied reward, each expert episode should out-earn each negative episode in
    discounted return. `return_ranking` is the fraction of (expert, negative) episode
    pairs where it does (ties half): 1 is the max-margin IRL condition met on every pair.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from grace.fitness.metrics import auc_pos_neg, rankdata
from grace.program import PARAM_ABS_MAX

DEFAULT_GAMMA = 0.99


def terminal_value(r_abs: float, gamma: float) -> float:
    """The discounted value, seen from the terminating transition, of an absorbing state that pays
    `r_abs` per step forever, clipped to what PARAMS may hold (a reward of ~1e29 made it overflow)."""
    return float(np.clip(gamma * r_abs / (1.0 - gamma), -PARAM_ABS_MAX, PARAM_ABS_MAX))


def absorbing_reward(terminal: float, gamma: float) -> float:
    """The per-step reward of the absorbing state a terminal value stands for (`terminal_value`'s
    inverse)."""
    return terminal * (1.0 - gamma) / gamma


def shaping_term(phi_s: Any, phi_next: Any, terminated: Any, gamma: float, xp: Any = np) -> Any:
    """F = gamma * Phi(s') * (1 - terminated) - Phi(s): the absorbing state has Phi = 0. `xp`:
    numpy (the sandbox, `grace eval`) or jax.numpy (PPO): the one formula for both."""
    return gamma * xp.where(xp.asarray(terminated, dtype=bool), 0.0, phi_next) - phi_s


def payment(terminal: float, floor: float | None, gamma: float) -> tuple[float, float]:
    """(shift, lump) of a terminal value: every step pays the reward less `shift` and the
    transition that terminates pays `lump` more. `shift` is the lower of the absorbing state's
    per-step reward and the `floor` (the lowest reward the data saw; None: none, so the whole
    terminal value is paid as the shift) and `lump` the value of the absorbing state's rest
    (see the module docstring)."""
    r_abs = absorbing_reward(terminal, gamma)
    shift = r_abs if floor is None else min(r_abs, float(floor))
    return shift, terminal_value(r_abs - shift, gamma)


def applied_reward(r: Any, phi_s: Any, phi_next: Any, terminated: Any, terminal: float, gamma: float,
                   xp: Any = np, floor: float | None = None) -> Any:
    """The reward PPO trains on and every export pays: `r - shift`, the terminal value's `lump`
    on a terminating transition (`payment` of `terminal` and `floor`), plus shaping
    (`terminated`: the transition ends its episode by termination, never by a time limit; the
    absorbing state has Phi = 0)."""
    term = xp.asarray(terminated, dtype=bool)
    shift, lump = payment(terminal, floor, gamma)
    return r - shift + xp.where(term, lump, 0.0) + shaping_term(phi_s, phi_next, term, gamma, xp)


def episode_returns(r: np.ndarray, episode: np.ndarray, step: np.ndarray, terminal: float,
                    gamma: float, floor: float | None = None,
                    terminated: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(episode ids, discounted return of each) of what `applied_reward` pays (shaping aside:
    add it to `r`): sum_t gamma^t (r_t - shift + lump * terminated_t). Rows may come in any
    order; only rows present count. `terminated`: the rows whose transition terminates (None:
    none does)."""
    groups = Grouping(episode, step, None, gamma, terminated)
    return groups.ids, groups.returns(r, terminal, floor)


class Grouping:
    """Rows grouped by episode once (the np.unique and the discounts `return_ranking` would redo
    per call), for ranking many rewards on the same rows: `grace.fitness.offline` ranks every
    candidate PARAMS, each under two terminal values, on the same train rows. `expert`: which rows
    are the experts' (None: no episode is); `terminated`: which rows' transitions terminate their
    episode (None: none does)."""

    def __init__(self, episode: np.ndarray, step: np.ndarray, expert: np.ndarray | None, gamma: float,
                 terminated: np.ndarray | None = None) -> None:
        self.ids, self.inv = np.unique(np.asarray(episode), return_inverse=True)
        self.disc = np.power(gamma, np.asarray(step, np.float64))
        is_exp = np.zeros(len(self.inv)) if expert is None else np.asarray(expert, np.float64)
        self.is_exp = np.bincount(self.inv, weights=is_exp, minlength=len(self.ids)) > 0
        ends = np.zeros(len(self.inv), bool) if terminated is None else np.asarray(terminated, bool)
        self.end_disc = self.disc * ends
        self.gamma = gamma

    def returns(self, r: np.ndarray, terminal: float, floor: float | None = None) -> np.ndarray:
        """Each episode's discounted return of what `applied_reward` pays under the `terminal`
        value and `floor` (shaping aside), sum_t gamma^t (r_t - shift + lump * terminated_t), in
        the order of `ids`."""
        shift, lump = payment(terminal, floor, self.gamma)
        per_row = self.disc * (np.asarray(r, np.float64) - shift) + lump * self.end_disc
        return np.bincount(self.inv, weights=per_row, minlength=len(self.ids))


def return_ranking(r: np.ndarray, episode: np.ndarray, step: np.ndarray, expert: np.ndarray,
                   terminal: float, gamma: float, groups: Grouping | None = None, floor: float | None = None,
                   terminated: np.ndarray | None = None) -> dict[str, float]:
    """`return_ranking` (pairs where the expert episode earns more; nan without both kinds of
    episode), the mean discounted return (`episode_returns`, under the `terminal` value and
    `floor`) of expert and of negative episodes, and their counts. `groups`: these rows'
    `Grouping` (episode, step, expert, gamma and `terminated`), when made already."""
    groups = groups or Grouping(episode, step, expert, gamma, terminated)
    g = groups.returns(r, terminal, floor)
    ge, gn = g[groups.is_exp], g[~groups.is_exp]
    if ge.size and gn.size:  # returns equal up to rounding tie (they are sums of many terms)
        tol = 1e-9 * max(float(np.max(np.abs(g))), 1e-300)
        ge, gn = np.round(ge / tol) * tol, np.round(gn / tol) * tol
    return {
        "return_ranking": auc_pos_neg(ge, gn),
        "return_expert": float(ge.mean()) if ge.size else math.nan,
        "return_negative": float(gn.mean()) if gn.size else math.nan,
        "n_expert_episodes": float(ge.size), "n_negative_episodes": float(gn.size),
    }


def fit_terminal(r: np.ndarray, episode: np.ndarray, step: np.ndarray, terminal: np.ndarray,
                 expert: np.ndarray, gamma: float, shaping: np.ndarray | None = None,
                 groups: Grouping | None = None) -> float | None:
    """The terminal value learned from the data (see the module docstring); None when no
    transition terminates (then it cannot matter on this data and the program keeps none).
    Each is ranked as it is paid, with the floor `r.min()` (`payment`). `shaping`: the potential's
    F per row, added to `r` when episodes are ranked; `groups`: the rows' `Grouping` (with
    `terminal` as its terminated rows), when made already."""
    terminal = np.asarray(terminal, bool)
    r = np.asarray(r, np.float64)
    if not terminal.any() or r.size == 0:
        return None
    floor = float(r.min())
    low, high = terminal_value(floor, gamma), terminal_value(float(r.max()), gamma)
    paid = r if shaping is None else r + shaping
    groups = groups or Grouping(episode, step, expert, gamma, terminal)
    rank = {v: return_ranking(paid, episode, step, expert, v, gamma, groups, floor)["return_ranking"]
            for v in (low, high)}
    rank = {v: (0.5 if math.isnan(x) else x) for v, x in rank.items()}
    if rank[low] != rank[high]:
        return low if rank[low] > rank[high] else high
    expert = np.asarray(expert, bool)
    ends_expert = terminal[expert].sum() / max(1, len(np.unique(np.asarray(episode)[expert])))
    ends_negative = terminal[~expert].sum() / max(1, len(np.unique(np.asarray(episode)[~expert])))
    return high if ends_expert > ends_negative else low


def potential_metrics(phi: np.ndarray, episode: np.ndarray, step: np.ndarray, expert: np.ndarray) -> dict[str, float]:
    """Does a potential teach? `potential_progress`: mean rank correlation (Spearman) of Phi with
    the time step within expert episodes (1: it rises all along every one); `potential_above`:
    the share of (expert, negative) state pairs at the same time step where the expert's Phi is
    higher (ties half; 0.5 = no better than the negatives). nan where the data has no such pairs."""
    phi, episode, step = np.asarray(phi, np.float64), np.asarray(episode), np.asarray(step)
    expert = np.asarray(expert, bool)
    return {"potential_progress": mean_progress(phi[expert], episode[expert], step[expert]),
            "potential_above": above_at_equal_time(phi[expert], step[expert], phi[~expert], step[~expert])}


def mean_progress(values: np.ndarray, episode: np.ndarray, step: np.ndarray) -> float:
    """Mean over episodes (of >= 3 rows) of the Spearman correlation of `values` with `step`
    (an episode where `values` is constant counts 0); nan without such episodes."""
    out = []
    for rows in _groups(episode):
        if len(rows) < 3:
            continue
        rv, rt = rankdata(values[rows]), rankdata(step[rows])
        sv, st = float(np.std(rv)), float(np.std(rt))
        out.append(0.0 if sv == 0 or st == 0 else float(np.mean((rv - rv.mean()) * (rt - rt.mean())) / (sv * st)))
    return float(np.mean(out)) if out else math.nan


def above_at_equal_time(v_exp: np.ndarray, t_exp: np.ndarray, v_neg: np.ndarray, t_neg: np.ndarray) -> float:
    """Share of (expert, negative) pairs at the same time step where the expert's value is higher
    (ties half); nan when no time step has both."""
    wins = pairs = 0.0
    neg = {int(t_neg[rows[0]]): rows for rows in _groups(t_neg)}
    for rows in _groups(t_exp):
        other = neg.get(int(t_exp[rows[0]]))
        if other is None:
            continue
        ve, vn = v_exp[rows], v_neg[other]
        n = len(ve) * len(vn)
        wins += auc_pos_neg(ve, vn) * n
        pairs += n
    return wins / pairs if pairs else math.nan


def _groups(keys: np.ndarray) -> list[np.ndarray]:
    """Row indices of each distinct key (in key order)."""
    keys = np.asarray(keys)
    if keys.size == 0:
        return []
    order = np.argsort(keys, kind="stable")
    cuts = np.flatnonzero(np.diff(keys[order])) + 1
    return np.split(order, cuts)
