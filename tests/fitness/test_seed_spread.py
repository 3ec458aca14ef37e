"""Seeds that lag (grace/fitness/seed_spread.py): which seeds, and what their policies end up doing."""

from __future__ import annotations

import numpy as np

from grace.data.trajectories import Episode
from grace.fitness.seed_spread import describe_lag, lag_report, lagging_seeds, late_field_means


def _episode(first: list[float], second: list[float], n: int = 4) -> Episode:
    """An episode of n + 1 states: the first half at `first`, the second half at `second`."""
    obs = np.array([first] * (n // 2) + [second] * (n + 1 - n // 2), dtype=np.float32)
    return Episode(obs=obs, actions=np.zeros(n), rewards=None, terminated=False, truncated=True)


def test_late_field_means_average_the_second_half_of_each_seeds_own_episodes() -> None:
    eps = [_episode([9, 9, 9], [1, -2, 4]), _episode([9, 9, 9], [3, 2, 0]),  # seed 0
           _episode([0, 0, 0], [-5, 0, 1]), _episode([0, 0, 0], [5, 0, 1])]  # seed 1
    late = late_field_means(eps, 2, {"x": 0, "v": [1, 2]})  # a vector field is averaged over its columns
    assert late == [{"x": 2.0, "v": 2.0}, {"x": 5.0, "v": 0.5}]


def test_seeds_lag_only_when_the_worst_and_best_are_far_apart() -> None:
    assert lagging_seeds([500, 500, 58, 71, 500]) == [2, 3]  # quality23's fixed-horizon CartPole winner
    assert lagging_seeds([500, 490, 495, 470]) == []  # ordinary seed noise
    assert lagging_seeds([500, 400], scale=490) == []  # 100 apart: under a quarter of true-reward PPO's gain
    assert lagging_seeds([500, 300], scale=490) == [1]
    assert lagging_seeds([-120, -125, -200]) == [2]  # negative returns (MountainCar): the lower lags
    assert lagging_seeds([500]) == [] and lagging_seeds([500, float("nan")]) == []


def test_the_report_names_the_fields_that_differ_most_on_the_lagging_seeds() -> None:
    late = [{"angle": 0.005, "spin": 0.15, "x": 0.10}, {"angle": 17.0, "spin": 4.5, "x": 0.30},
            {"angle": 0.006, "spin": 0.16, "x": 0.12}]
    report = lag_report([500, 59, 500], late)
    assert report is not None and report["seeds"] == [1] and report["returns"] == [59] and report["others"] == [500, 500]
    assert [f["field"] for f in report["fields"]] == ["angle", "spin", "x"]
    assert report["fields"][0]["lagging"] == 17.0 and np.isclose(report["fields"][0]["others"], 0.0055)
    line = describe_lag(report, 3)
    assert line.startswith("1 of 3 seeds lag (return 59 vs 500, 500 on the others)") and "|angle| 17 vs 0.0055" in line
    assert lag_report([500, 498, 500], late) is None
    assert lag_report([500, 59, 500], [])["fields"] == []  # no field means (an old result): the seeds alone
