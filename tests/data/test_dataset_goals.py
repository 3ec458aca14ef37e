"""Goal tasks: a negative episode that reached the goal (`data.reached_goal`)."""

from __future__ import annotations

import numpy as np
import pytest

from grace.config import ConfigError, EvolveConfig
from grace.data.dataset import build_offline_data, reached_goal
from grace.data.trajectories import Episode, Trajectories
from grace.tasks import ActionSpace, Field, ObsSchema, Task

SCHEMA = ObsSchema((Field("x"),))


def _succeeded(ret: float, terminated: bool, obs: np.ndarray) -> bool:
    return bool(terminated and ret > 0)  # BabyAI's rule: reward > 0 only on success


def _task(kind: str = "goal", success: bool = True) -> Task:
    return Task(name="toy", description="toy", schema=SCHEMA, action=ActionSpace("discrete", n=2), kind=kind,
                success=_succeeded if success else None)


def _traj(ends: list[tuple[bool, float]], length: int = 4) -> Trajectories:
    """One episode per (terminated, final reward); x = 9 on a terminated episode's last state."""
    eps = []
    for k, (terminated, last_reward) in enumerate(ends):
        obs = np.full((length + 1, 1), float(k), np.float32)
        if terminated:
            obs[-1, 0] = 9.0
        rewards = np.zeros(length, np.float32)
        rewards[-1] = last_reward
        eps.append(Episode(obs=obs, actions=np.zeros(length, np.int64), rewards=rewards,
                           terminated=terminated, truncated=not terminated))
    return Trajectories.from_episodes(eps)


DEMOS = _traj([(True, 0.9)] * 4)
# three terminations (one a failure by the env's verifier, which the search cannot see), a truncation
RANDOM = _traj([(True, 0.5), (True, 0.0), (False, 0.0), (True, 0.7)])


def test_reached_goal_is_termination_never_the_envs_success_signal() -> None:
    """As for the demos' goal positives: an episode that terminated reached the goal. The task's
    success verifier (benchmarks only) is not read, so rewards or no rewards give the same."""
    assert reached_goal(_task(), RANDOM).tolist() == [True, True, False, True]
    assert reached_goal(_task(success=False), RANDOM).tolist() == [True, True, False, True]
    no_rewards = Trajectories(RANDOM.obs, RANDOM.actions, RANDOM.lengths, RANDOM.terminated, RANDOM.truncated)
    assert reached_goal(_task(), no_rewards).tolist() == [True, True, False, True]


def _goal_rows(data, label: bool) -> int:
    neg = data["source"] == 1
    return int(np.sum(neg & (data["s_next"][:, 0] == 9.0) & (data["label"] == label)))


@pytest.mark.parametrize(("reached", "negatives", "positives", "dropped"),
                         [("negative", 3, 0, 0), ("drop", 0, 0, 3), ("positive", 0, 3, 0)])
def test_reached_goal_modes(reached: str, negatives: int, positives: int, dropped: int) -> None:
    data = build_offline_data(_task(), DEMOS, [("random", RANDOM)], holdout=0.0, reached=reached)
    assert _goal_rows(data, False) == negatives
    assert _goal_rows(data, True) == positives
    assert int(np.sum(data["source"] == 1)) == RANDOM.n_transitions - dropped
    assert int(np.sum(data["label"] & (data["source"] == 0))) == 4  # the demos' goal transitions


def test_keepalive_tasks_and_the_default_are_unchanged() -> None:
    base = build_offline_data(_task("keepalive"), DEMOS, [("random", RANDOM)], holdout=0.0)
    for reached in ("drop", "positive"):
        other = build_offline_data(_task("keepalive"), DEMOS, [("random", RANDOM)], holdout=0.0, reached=reached)
        assert np.array_equal(base["label"], other["label"]) and len(base["label"]) == len(other["label"])
    assert EvolveConfig().data.reached_goal == "negative"
    with pytest.raises(ValueError, match="reached"):
        build_offline_data(_task(), DEMOS, [("random", RANDOM)], reached="maybe")
    with pytest.raises(ConfigError, match="data.reached_goal"):
        EvolveConfig().override({"data.reached_goal": "maybe"}).validate()
