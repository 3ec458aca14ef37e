"""Fitness of reward programs: GRACE's offline discrimination objective (and PPO fitness)."""

from grace.fitness.metrics import auc, calibrate, fitness, metrics, trajectory_ranking
from grace.fitness.offline import (
    build_offline_data,
    evaluate,
    evaluate_in_worker,
    fit_params,
    random_negatives,
    worst_examples,
)

__all__ = [
    "auc", "build_offline_data", "calibrate", "evaluate", "evaluate_in_worker", "fit_params",
    "fitness", "metrics", "random_negatives", "trajectory_ranking", "worst_examples",
]
