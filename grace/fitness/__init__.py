"""Fitness of reward programs: GRACE's offline discrimination objective and PPO fitness.

`grace.fitness.base` holds the Fitness protocol and the FITNESS registry (offline, ppo, ppo-true).
"""

from grace.fitness.metrics import auc, calibrate, fitness, metrics, trajectory_ranking
from grace.fitness.offline import OfflineFitness, evaluate, evaluate_in_worker, worst_examples
from grace.fitness.params import fit_params

__all__ = [
    "OfflineFitness", "auc", "calibrate", "evaluate", "evaluate_in_worker", "fit_params",
    "fitness", "metrics", "trajectory_ranking", "worst_examples",
]
