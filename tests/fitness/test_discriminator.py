"""The candidate-independent discriminator: a policy is expert-like when the states it visits are
distributed like the expert's, not merely near some expert state."""

from __future__ import annotations

import numpy as np

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
        rows += [(e, 1, 1, 0, t == 4 and ended) for t in range(5)]
    rows += [(len(ends), 0, 1, 0, t == 2) for t in range(3)]
    rows += [(len(ends) + 1, 1, 1, 1, partial_ends) for _ in range(2)]
    ep, label, train, source, term = (np.array(c) for c in zip(*rows, strict=True))
    return {"episode": ep, "label": label, "train": train, "source": source, "terminal": term.astype(bool),
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
    assert goal.policy_likeness(visits, [True] * 8) == states_only
    assert goal.policy_likeness(visits, [True] * 6 + [False] * 2) == states_only * 0.75
    assert goal.policy_likeness(visits, [False] * 8) == 0.0
    keepalive = ExpertSimilarity(expert, ending_rate=0.0)  # experts never fall: falling is unlike them
    assert keepalive.policy_likeness(visits, [True] * 8) == 0.0
    assert ExpertSimilarity(expert).policy_likeness(visits, [False] * 8) == states_only
    assert goal.ending_match([]) == 1.0
