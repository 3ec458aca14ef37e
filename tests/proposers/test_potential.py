"""The offline operator's shaping step: potentials learned from the demos (GRACE step 7, no LLM)."""

from __future__ import annotations

import asyncio
from functools import cache

import numpy as np
import pytest

from grace.data.dataset import build_offline_data
from grace.data.rollout import random_negatives
from grace.data.trajectories import load_demos
from grace.program import RewardProgram
from grace.proposers.base import Feedback
from grace.proposers.offline.operator import OfflineProposer
from grace.proposers.offline.potential import KEYS, search_potential, with_potential
from grace.sandbox.compile import compile_reward
from grace.search.negatives import shaping_trajectories, task_context
from grace.tasks import get_task


@cache
def _inputs(name: str) -> tuple:
    task = get_task(name)
    data = build_offline_data(task, load_demos(f"demos/{name}.npz", task), [("random", random_negatives(task, 12, 0))])
    return task, data, shaping_trajectories(task, data)


def _shaped(name: str) -> tuple[RewardProgram, dict]:
    task, data, trajs = _inputs(name)
    parent = RewardProgram.from_file(task.reference_reward)
    prop = asyncio.run(OfflineProposer().shaping(task_context(task, data), Feedback(parent, 0.9), trajs, 0))
    assert prop.operator == "shaping" and prop.meta["mutation"] == "potential", prop.meta
    return RewardProgram(prop.source).validate(task.schema), prop.meta


def _rises(name: str, program: RewardProgram) -> None:
    """The added potential rises along the expert's episodes and beats random ones at equal time."""
    task, data, _ = _inputs(name)
    phi = compile_reward(program.source, task.schema).potential(data["s_next"], program.params)
    expert = (data["source"] == 0) & ~data["train"].astype(bool)  # held-out expert episodes
    corr = [np.corrcoef(np.argsort(np.argsort(phi[rows])), data["step"][rows])[0, 1]
            for e in np.unique(data["episode"][expert]) for rows in [np.flatnonzero(expert & (data["episode"] == e))]]
    assert np.mean(corr) > 0.3
    first = data["step"] < 30
    assert phi[first & (data["source"] == 0)].mean() > phi[first & (data["source"] != 0)].mean() or name == "pendulum"


def test_mountaincar_gets_a_potential_of_speed_height_or_position() -> None:
    program, meta = _shaped("mountaincar")
    assert "velocity" in meta["potential"] or "position" in meta["potential"]
    assert meta["potential_progress"] >= 0.5 and meta["potential_above"] >= 0.65
    assert program.has_potential and set(program.potential_params) <= set(KEYS)
    assert program.params["goal_bonus"] == 1.0  # the reward itself is unchanged
    _rises("mountaincar", program)


def test_pendulum_gets_an_uprightness_potential() -> None:
    program, meta = _shaped("pendulum")
    assert "theta" in meta["potential"]
    task, data, _ = _inputs("pendulum")
    compiled = compile_reward(program.source, task.schema)
    up = np.array([[1.0, 0.0, 0.0]], np.float32)  # cos, sin, angular velocity
    down = np.array([[-1.0, 0.0, 0.0]], np.float32)
    assert compiled.potential(up, program.params)[0] > compiled.potential(down, program.params)[0]
    _rises("pendulum", program)


def test_no_rising_potential_on_cartpole_means_an_ordinary_mutation() -> None:
    """Keep-alive CartPole has no progress to pay: no candidate clearly beats none."""
    task, data, trajs = _inputs("cartpole")
    assert search_potential(trajs, task.schema) is None
    parent = RewardProgram.from_file(task.reference_reward)
    prop = asyncio.run(OfflineProposer().shaping(task_context(task, data), Feedback(parent, 0.9), trajs, 0))
    assert prop.operator == "mutate" and "no potential rises" in prop.meta["note"]


def test_a_potential_is_replaced_not_stacked() -> None:
    task, _, trajs = _inputs("mountaincar")
    program, _ = _shaped("mountaincar")
    pot = search_potential(trajs, task.schema, reward_spread=0.01)
    assert pot is not None
    again = with_potential(program.with_params(program.params | {"potential_scale": 5.0}), pot).validate(task.schema)
    assert again.source.count("def potential(") == 1
    assert again.params["potential_scale"] == pot.scale != program.params["potential_scale"]
    assert again.functions["reward"].lineno == program.functions["reward"].lineno


def test_without_negative_episodes_there_is_no_potential() -> None:
    task, _, trajs = _inputs("mountaincar")
    assert search_potential([t for t in trajs if t["label"] == "expert"], task.schema) is None


@pytest.mark.parametrize("name", ["mountaincar", "pendulum"])
def test_the_search_is_deterministic(name: str) -> None:
    task, _, trajs = _inputs(name)
    assert search_potential(trajs, task.schema) == search_potential(trajs, task.schema)
