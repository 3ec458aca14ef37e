"""Fitness of reward programs: GRACE's offline discrimination objective (and PPO fitness)."""

from grace.fitness.metrics import auc, calibrate, fitness, metrics, trajectory_ranking
from grace.fitness.offline import evaluate, evaluate_in_worker, worst_examples
from grace.fitness.params import fit_params

__all__ = [
    "auc", "calibrate", "evaluate", "evaluate_in_worker", "fit_params",
    "fitness", "metrics", "trajectory_ranking", "worst_examples",
]
