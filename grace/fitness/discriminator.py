"""A candidate-independent discriminator for IRL-mode PPO fitness, fixed per round.

`ExpertSimilarity` scores states by how close they lie to the positive (expert or goal) states
of the offline dataset, in feature space standardised by the positives' spread:
score(x) = exp(-min_i ||(x - e_i) / sigma||^2 / d). It is fit once per round from data alone,
never from the candidate being scored, so PPO fitness cannot be gamed by the candidate's own
reward scale. Plain numpy; picklable, so it crosses into a sandbox worker.
"""

from __future__ import annotations

import numpy as np


class ExpertSimilarity:
    def __init__(self, positives: np.ndarray, max_ref: int = 2000, seed: int = 0) -> None:
        pos = np.asarray(positives, dtype=np.float64)
        if len(pos) == 0:
            raise ValueError("ExpertSimilarity needs at least one positive state")
        rng = np.random.default_rng(seed)
        if len(pos) > max_ref:
            pos = pos[rng.choice(len(pos), size=max_ref, replace=False)]
        self.mean = pos.mean(axis=0)
        spread = pos.std(axis=0)
        self.scale = np.where(spread > 1e-6, spread, 1.0)
        self.ref = ((pos - self.mean) / self.scale).astype(np.float32)

    @classmethod
    def from_data(cls, data: dict[str, np.ndarray], seed: int = 0, max_ref: int = 2000) -> ExpertSimilarity:
        """From the train positives of the offline dataset (`max_ref`: the run's fitness.disc_max_ref)."""
        mask = data["label"].astype(bool) & data["train"].astype(bool)
        return cls(data["s_next"][mask], max_ref=max_ref, seed=seed)

    def __call__(self, states: np.ndarray) -> np.ndarray:
        x = ((np.asarray(states, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)
        best = np.full(len(x), np.inf, dtype=np.float32)
        for start in range(0, len(self.ref), 512):  # chunked to bound memory
            ref = self.ref[start : start + 512]
            d2 = (x * x).sum(1)[:, None] - 2.0 * x @ ref.T + (ref * ref).sum(1)[None, :]
            best = np.minimum(best, d2.min(axis=1))
        return np.exp(-np.maximum(best, 0.0) / x.shape[1])
