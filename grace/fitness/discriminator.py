"""A candidate-independent discriminator for IRL-mode PPO fitness, fixed per round.

`ExpertSimilarity` is fit once per round from the positive (expert or goal) states of the offline
dataset, never from the candidate being scored, so PPO fitness cannot be gamed by the candidate's
own reward scale. In feature space standardised by the positives' spread (d dimensions):

- per state (`__call__`): how close it lies to the nearest positive, exp(-min_i ||x - e_i||^2 / d):
  what the active rounds use to cut a policy's rollouts into expert-like and not;
- per policy (`likeness`): how closely the *distribution* of the states it visits matches the
  positives', 2 K(P, E) / (K(P, P) + K(E, E)) with the Gaussian kernel exp(-||x - y||^2 / d) and
  K the mean kernel value between two sets (1 when the mean embeddings coincide; 1 - likeness is
  the squared MMD relative to the two sets' self-similarity). Being near *some* expert state is
  not enough: a Pendulum policy that swings through the expert's swing-up states for the whole
  episode scored 0.84 on the nearest-state mean (the expert-like true-reward policy 0.95) and
  0.59 here (0.95); it is how expert-like PPO in the loop, PPO fitness and the rounds measure.

Plain numpy; picklable, so it crosses into a sandbox worker.
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
        self._kee: float | None = None  # K(E, E): fixed by the positives, computed once on first use

    @classmethod
    def from_data(cls, data: dict[str, np.ndarray], seed: int = 0, max_ref: int = 2000) -> ExpertSimilarity:
        """From the train positives of the offline dataset (`max_ref`: the run's fitness.disc_max_ref)."""
        mask = data["label"].astype(bool) & data["train"].astype(bool)
        return cls(data["s_next"][mask], max_ref=max_ref, seed=seed)

    def _standardise(self, states: np.ndarray) -> np.ndarray:
        return ((np.asarray(states, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)

    def likeness(self, states: np.ndarray, max_states: int = 2000, seed: int = 0) -> float:
        """How closely the distribution of `states` (a policy's visits) matches the positives'
        (module docstring); in [0, 1]. At most `max_states` of them (a seeded subsample) are used."""
        x = self._standardise(states)
        if len(x) == 0:
            return float("nan")
        if len(x) > max_states:
            x = x[np.random.default_rng(seed).choice(len(x), size=max_states, replace=False)]
        d = x.shape[1]
        if self._kee is None:
            self._kee = _mean_kernel(self.ref, self.ref, d)
        kpe, kpp = _mean_kernel(x, self.ref, d), _mean_kernel(x, x, d)
        return float(2.0 * kpe / (kpp + self._kee))

    def heldout_likeness(self, data: dict[str, np.ndarray]) -> float | None:
        """The likeness of the held-out positives of the offline dataset (None when none is held out):
        the expert's own score, the scale a policy's is read against."""
        held = data["label"].astype(bool) & ~data["train"].astype(bool)
        return self.likeness(data["s_next"][held]) if held.any() else None

    def __call__(self, states: np.ndarray) -> np.ndarray:
        x = self._standardise(states)
        best = np.full(len(x), np.inf, dtype=np.float32)
        for start in range(0, len(self.ref), 512):  # chunked to bound memory
            ref = self.ref[start : start + 512]
            d2 = (x * x).sum(1)[:, None] - 2.0 * x @ ref.T + (ref * ref).sum(1)[None, :]
            best = np.minimum(best, d2.min(axis=1))
        return np.exp(-np.maximum(best, 0.0) / x.shape[1])


def _mean_kernel(a: np.ndarray, b: np.ndarray, d: int) -> float:
    """Mean of exp(-||a_i - b_j||^2 / d) over all pairs (chunked to bound memory)."""
    total, bb = 0.0, (b * b).sum(1)[None, :]
    for start in range(0, len(a), 512):
        x = a[start : start + 512]
        d2 = (x * x).sum(1)[:, None] - 2.0 * x @ b.T + bb
        total += float(np.exp(-np.maximum(d2, 0.0) / d).sum(dtype=np.float64))
    return total / (len(a) * len(b))

