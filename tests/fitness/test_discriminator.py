"""The candidate-independent discriminator: a policy is expert-like when the states it visits are
distributed like the expert's, not merely near some expert state."""

from __future__ import annotations

import numpy as np
import pytest

from grace.fitness.discriminator import ExpertSimilarity


def test_likeness_sees_proportions_the_nearest_state_mean_misses() -> None:
    """An expert that spends 10% of its time in a transit region and 90% at the goal; a policy
    that visits the same regions in the opposite proportions is near expert states everywhere
    (high per-state mean) but not expert-like (low likeness); a fresh sample of the expert is."""
    rng = np.random.default_rng(0)

    def visits(n_transit: int, n_goal: int) -> np.ndarray:
        transit = np.stack([rng.uniform(-3, 0, n_transit), rng.normal(0, 0.1, n_transit)], 1)
        goal = rng.normal([1.0, 0.0], 0.1, (n_goal, 2))
        return np.concatenate([transit, goal])

    disc = ExpertSimilarity(visits(200, 1800))
    expert_again, stuck_in_transit = visits(100, 900), visits(900, 100)
    assert disc(stuck_in_transit).mean() > 0.8  # every visited state lies near some expert state
    assert disc.likeness(expert_again) > 0.95
    assert disc.likeness(stuck_in_transit) < 0.6 < disc.likeness(visits(300, 700)) < disc.likeness(expert_again)
    far = rng.normal(10.0, 0.1, (500, 2))
    assert disc.likeness(far) < 0.01
    assert 0.0 <= disc.likeness(far) <= disc.likeness(expert_again) <= 1.0 + 1e-9


def test_likeness_is_deterministic_and_subsamples_large_batches() -> None:
    rng = np.random.default_rng(1)
    disc = ExpertSimilarity(rng.normal(0, 1, (300, 3)))
    states = rng.normal(0.2, 1, (5000, 3))
    assert disc.likeness(states, max_states=800) == disc.likeness(states, max_states=800)
    assert abs(disc.likeness(states, max_states=800) - disc.likeness(states, max_states=5000)) < 0.02
    assert np.isnan(disc.likeness(np.zeros((0, 3))))


def _dataset(ends: list[bool], partial_ends: bool = False) -> dict[str, np.ndarray]:
    """Expert episodes of 5 steps (`ends[i]`: episode i terminates on its last row), one random
    episode that always terminates, and one probe segment (a partial episode) of the expert."""
    rows = []
    for e, ended in enumerate(ends):
        rows += [(e, t, 1, 1, 0, t == 4 and ended) for t in range(5)]
    rows += [(len(ends), t, 0, 1, 0, t == 2) for t in range(3)]
    rows += [(len(ends) + 1, t, 1, 1, 1, partial_ends) for t in range(2)]
    ep, step, label, train, source, term = (np.array(c) for c in zip(*rows, strict=True))
    return {"episode": ep, "step": step, "label": label, "train": train, "source": source, "terminal": term.astype(bool),
            "source_names": np.array(["demos", "probe-1"]), "s_next": np.arange(len(ep) * 2.0).reshape(-1, 2)}


def test_expert_ending_rate_counts_whole_train_expert_episodes() -> None:
    from grace.fitness.discriminator import expert_ending_rate

    assert expert_ending_rate(_dataset([True, True, False, False])) == 0.5
    assert expert_ending_rate(_dataset([False, False], partial_ends=True)) == 0.0  # a probe segment is not an episode
    assert ExpertSimilarity.from_data(_dataset([True])).ending_rate is None  # not asked for
    assert ExpertSimilarity.from_data(_dataset([True, False]), endings=True).ending_rate == 0.5


def test_policy_likeness_weighs_how_episodes_end() -> None:
    """A policy whose episodes never end where every expert episode does (a goal never reached)
    is not expert-like however expert-like its states; without an expert share, states alone count."""
    rng = np.random.default_rng(2)
    expert = rng.normal(0, 1, (400, 2))
    visits = rng.normal(0, 1, (400, 2))
    goal = ExpertSimilarity(expert, ending_rate=1.0)
    states_only = goal.likeness(visits)
    assert goal.policy_likeness([visits], [True] * 8) == states_only
    assert goal.policy_likeness([visits], [True] * 6 + [False] * 2) == states_only * 0.75
    assert goal.policy_likeness([visits], [False] * 8) == 0.0
    keepalive = ExpertSimilarity(expert, ending_rate=0.0)  # experts never fall: falling is unlike them
    assert keepalive.policy_likeness([visits], [True] * 8) == 0.0
    assert ExpertSimilarity(expert).policy_likeness([visits], [False] * 8) == states_only
    assert goal.ending_match([]) == 1.0


def test_policy_likeness_weighs_how_long_episodes_run() -> None:
    """The state distribution cannot see how soon a goal is reached (terminating MountainCar:
    candidates reaching the flag in 124 and 150 steps scored alike): with the experts' mean length,
    the ratio of the means (min / max) weighs the policy, slower or faster alike."""
    rng = np.random.default_rng(3)
    expert = rng.normal(0, 1, (600, 2))
    goal = ExpertSimilarity(expert, ending_rate=1.0, lengths=[100, 140])
    slow, on_time = [rng.normal(0, 1, (150, 2))] * 4, [rng.normal(0, 1, (120, 2))] * 4
    states = goal.likeness(np.concatenate(slow))
    assert goal.policy_likeness(slow, [True] * 4) == pytest.approx(states * 120 / 150)
    assert goal.length_match([120, 120]) == 1.0 and goal.length_match([60]) == 0.5 and goal.length_match([]) == 1.0
    assert goal.policy_likeness(on_time, [True] * 4) > goal.policy_likeness(slow, [True] * 4)
    assert ExpertSimilarity(expert, ending_rate=1.0).length_match([5]) == 1.0  # no expert lengths


def _swing_up(n_steps: int, reach: int) -> np.ndarray:
    """A 1-D state rising linearly from 0 to 1 by step `reach`, then held there, with a time-free
    second coordinate; `n_steps` visited states in step order."""
    t = np.arange(n_steps)
    return np.stack([np.minimum(t / reach, 1.0), np.sin(t)], axis=1)


def test_horizon_likeness_compares_a_policy_over_the_steps_the_experts_were_seen() -> None:
    """Experts reach the goal in 10-20 steps and their episodes end there; policies run 100 steps
    in a fixed-horizon env. Over the experts' horizon a policy that rises as fast as they did is
    expert-like, one that rises five times slower less so, one that never rises least; over whole
    episodes the fast riser, parked at the goal for 85 steps, looks less like the experts than
    the slow one (the goal-state trap of fixed-horizon Acrobot)."""
    experts = [_swing_up(n, n) for n in (10, 14, 17, 20)]
    disc = ExpertSimilarity(np.concatenate(experts), horizons=[len(e) for e in experts])
    plain = ExpertSimilarity(np.concatenate(experts))
    fast, slow, never = ([_swing_up(100, reach)] * 4 for reach in (15, 75, 10**6))
    over_horizon = [disc.policy_likeness(p, [False] * 4) for p in (fast, slow, never)]
    assert over_horizon[0] > 0.9 and over_horizon[0] > over_horizon[1] > over_horizon[2]
    assert plain.policy_likeness(fast, [False] * 4) < plain.policy_likeness(slow, [False] * 4)
    # a state past the longest expert episode weighs nothing
    tail = [np.concatenate([e[:20], np.full((80, 2), 50.0)]) for e in fast]
    assert disc.policy_likeness(tail, [False] * 4) == disc.policy_likeness([e[:20] for e in fast], [False] * 4)
    assert np.isnan(disc.policy_likeness([], []))


def test_from_data_over_the_horizon_takes_every_state_of_whole_train_expert_episodes() -> None:
    data = _dataset([True, True, False])
    data["step"] = np.concatenate([np.arange(5)] * 3 + [np.arange(3), np.array([0, 1])])
    data["s_next"] = data["s_next"].astype(np.float64)
    data["label"] = np.where(data["step"] == 4, 1, 0)  # goal rows only, as a goal task labels them
    data["source"] = np.where(data["episode"] == 3, 2, data["source"])  # the random episode: a negative source
    data["source_names"] = np.array(["expert", "probe-1", "random"])
    goal_states = ExpertSimilarity.from_data(data)
    over = ExpertSimilarity.from_data(data, horizon=True)
    assert len(goal_states.ref) == 3 and len(over.ref) == 15  # 3 expert episodes x 5 steps; no probe rows
    assert over.survival.tolist() == [1.0] * 5 and goal_states.survival is None
    from grace.fitness.discriminator import expert_horizons

    data["train"] = np.where(data["episode"] == 2, 0, data["train"])
    assert expert_horizons(data).tolist() == [5, 5]
    assert over.heldout_likeness(data) is not None and goal_states.heldout_likeness(data) is not None


def test_for_task_picks_the_references_and_weights_by_task_kind_and_env() -> None:
    """Goal tasks compare with every state of the expert episodes (the goal transitions alone scored
    true-reward PPO's Acrobot policies below slower ones); keep-alive tasks with the positives; the
    horizon only where the demos come from another env; endings and lengths on every task (on a
    fixed-horizon env, a policy's episode ends where the wrapped env terminates)."""
    data = _dataset([True, True, False])
    data["step"] = np.concatenate([np.arange(5)] * 3 + [np.arange(3), np.array([0, 1])])
    data["label"] = np.where(data["step"] == 4, 1, 0)
    data["source"] = np.where(data["episode"] == 3, 2, data["source"])
    data["source_names"] = np.array(["expert", "probe-1", "random"])
    goal = ExpertSimilarity.for_task(data, goal=True, same_env=True)
    assert len(goal.ref) == 15 and goal.survival is None and goal.ending_rate == 2 / 3 and goal.mean_length == 5
    fixed = ExpertSimilarity.for_task(data, goal=True, same_env=False)
    assert len(fixed.ref) == 15 and fixed.survival is not None and fixed.ending_rate == 2 / 3
    assert fixed.mean_length == 5
    keepalive = ExpertSimilarity.for_task(data, goal=False, same_env=True)
    assert len(keepalive.ref) == 3 and not keepalive.whole_episodes and keepalive.survival is None
    assert goal.describe() == "every expert state, and the share of episodes that end and how long they run"
    assert fixed.describe() == ("every expert state over the experts' horizon, and the share of episodes that end"
                                " and how long they run")
    assert keepalive.describe().startswith("the positive")
