"""Whole episodes under a candidate reward: the terminal value and the episode-return margin.

A reward that separates expert from non-expert *states* can still fail to teach: if most states
score below zero, ending the episode early pays, and a random policy can out-earn the expert.
Two pieces fix what the per-state objective (`grace.fitness.metrics`) cannot see:

The terminal value (`PARAMS["terminal"]`)
    An episode that terminates (not truncated by a time limit) enters an absorbing state, as in
    Discriminator-Actor-Critic (Kostrikov et al. 2019). Staying there forever at a per-step reward
    `r_abs` is worth `gamma * r_abs / (1 - gamma)` from the terminating transition, which is the
    value added to that transition's reward. With it the discounted return of every episode is an
    infinite-horizon return, so adding a constant to the reward shifts every return equally and
    the optimal policy no longer depends on the reward's offset (which the calibrated objective
    cannot pin down). `r_abs` is learned with the rest, from the data: the lowest reward seen
    ("ending is as bad as the worst state", when the negatives terminate: falling over) or the
    highest ("as good as the best", when the experts terminate: reaching a goal), whichever
    ranks expert episodes above negative episodes more often (ties: by who terminates more).

The episode-return margin (Abbeel & Ng 2004; Ratliff et al. 2006)
    Under the reward with its terminal value, each expert episode should out-earn each negative
    episode in discounted return. `return_ranking` is the fraction of (expert, negative) episode
    pairs where it does (ties half): 1 is the max-margin IRL condition met on every pair.
"""

from __future__ import annotations

import math

import numpy as np

from grace.fitness.metrics import auc_pos_neg

DEFAULT_GAMMA = 0.99


def terminal_value(r_abs: float, gamma: float) -> float:
    """The discounted value, seen from the terminating transition, of an absorbing state that pays
    `r_abs` per step forever."""
    return float(gamma * r_abs / (1.0 - gamma))


def episode_returns(r: np.ndarray, episode: np.ndarray, step: np.ndarray, terminal: np.ndarray,
                    terminal_reward: float, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """(episode ids, discounted return of each): sum_t gamma^t r_t, plus gamma^t * terminal_reward
    on the transition that terminates. Rows may come in any order; only rows present count."""
    ids, inv = np.unique(np.asarray(episode), return_inverse=True)
    disc = np.power(gamma, np.asarray(step, np.float64))
    per_row = disc * (np.asarray(r, np.float64) + np.where(np.asarray(terminal, bool), terminal_reward, 0.0))
    return ids, np.bincount(inv, weights=per_row, minlength=len(ids))


def return_ranking(r: np.ndarray, episode: np.ndarray, step: np.ndarray, terminal: np.ndarray,
                   expert: np.ndarray, terminal_reward: float, gamma: float) -> dict[str, float]:
    """`return_ranking` (pairs where the expert episode earns more; nan without both kinds of
    episode), the mean discounted return of expert and of negative episodes, and their counts."""
    ids, g = episode_returns(r, episode, step, terminal, terminal_reward, gamma)
    _, inv = np.unique(np.asarray(episode), return_inverse=True)
    is_exp = np.bincount(inv, weights=np.asarray(expert, np.float64), minlength=len(ids)) > 0
    ge, gn = g[is_exp], g[~is_exp]
    if ge.size and gn.size:  # returns equal up to rounding tie (they are sums of many terms)
        tol = 1e-9 * max(float(np.max(np.abs(g))), 1e-300)
        ge, gn = np.round(ge / tol) * tol if tol > 0 else ge, np.round(gn / tol) * tol if tol > 0 else gn
    return {
        "return_ranking": auc_pos_neg(ge, gn),
        "return_expert": float(ge.mean()) if ge.size else math.nan,
        "return_negative": float(gn.mean()) if gn.size else math.nan,
        "n_expert_episodes": float(ge.size), "n_negative_episodes": float(gn.size),
    }


def fit_terminal(r: np.ndarray, episode: np.ndarray, step: np.ndarray, terminal: np.ndarray,
                 expert: np.ndarray, gamma: float) -> float | None:
    """The terminal value learned from the data (see the module docstring); None when no
    transition terminates (then it cannot matter on this data and the program keeps none)."""
    terminal = np.asarray(terminal, bool)
    r = np.asarray(r, np.float64)
    if not terminal.any() or r.size == 0:
        return None
    low, high = terminal_value(float(r.min()), gamma), terminal_value(float(r.max()), gamma)
    rank = {v: return_ranking(r, episode, step, terminal, expert, v, gamma)["return_ranking"] for v in (low, high)}
    rank = {v: (0.5 if math.isnan(x) else x) for v, x in rank.items()}
    if rank[low] != rank[high]:
        return low if rank[low] > rank[high] else high
    expert = np.asarray(expert, bool)
    ends_expert = terminal[expert].sum() / max(1, len(np.unique(np.asarray(episode)[expert])))
    ends_negative = terminal[~expert].sum() / max(1, len(np.unique(np.asarray(episode)[~expert])))
    return high if ends_expert > ends_negative else low
