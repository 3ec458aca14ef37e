"""Active negatives keep only the off-expert part of the policy's rollouts."""

from __future__ import annotations

import numpy as np

from grace.data.trajectories import Episode, Trajectories
from grace.fitness.discriminator import ExpertSimilarity
from grace.search.active import off_expert_segments


def test_only_off_expert_runs_become_negatives():
    rng = np.random.default_rng(0)
    expert = rng.normal(0.0, 0.1, size=(400, 2)).astype(np.float32)
    data = {"s_next": expert, "label": np.ones(400, np.int8), "train": np.arange(400) < 300}
    disc = ExpertSimilarity.from_data(data)
    # 10 expert-like steps, then 6 far away, then 4 expert-like again
    obs = np.concatenate([rng.normal(0, 0.1, (11, 2)), rng.normal(5, 0.1, (6, 2)), rng.normal(0, 0.1, (4, 2))])
    ep = Episode(obs.astype(np.float32), np.zeros(20, np.int64), np.zeros(20, np.float32), False, True)
    kept, threshold = off_expert_segments(Trajectories.from_episodes([ep]), disc, data)
    assert kept.n_episodes == 1 and kept.n_transitions == 6
    np.testing.assert_allclose(kept.obs[1:], obs[11:17], rtol=1e-6)
    assert threshold > 0 and kept.truncated.all()


def test_a_policy_that_looks_expert_everywhere_leaves_one_state():
    rng = np.random.default_rng(1)
    expert = rng.normal(0.0, 1.0, size=(300, 2)).astype(np.float32)
    data = {"s_next": expert, "label": np.ones(300, np.int8), "train": np.arange(300) < 200}
    disc = ExpertSimilarity.from_data(data)
    obs = np.zeros((9, 2), np.float32)
    ep = Episode(obs, np.zeros(8, np.int64), None, False, True)
    kept, _ = off_expert_segments(Trajectories.from_episodes([ep]), disc, data)
    assert kept.n_transitions == 1
