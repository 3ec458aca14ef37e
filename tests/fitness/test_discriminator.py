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
