"""`grace train` (PPO on a reward next to true-reward PPO): on a TOML task with a JAX twin, on a
Task built in Python (slow: each compiles rejax PPO), and a reward that cannot train is refused
before anything trains."""

from __future__ import annotations

import json
from functools import partial
from pathlib import Path

import pytest

import grace
from grace.tasks import ActionSpace, Field, ObsSchema, Task, get_task, jax_envs
from grace.train import RewardCheckError
from tests.conftest import ROOT, run_cli

TOML = ROOT / "examples/tasks/point_reach.toml"
NEAR = "def reward(s, a, s_next, p):\n    return -xp.linalg_norm(s_next.to_target, axis=-1)\n"
NO_TRACE = "def reward(s, a, s_next, p):\n    if s_next.angle > 0:\n        return 1.0\n    return 0.0\n"


TINY = {"num_envs": 4, "num_steps": 64, "num_epochs": 1}


@pytest.mark.slow  # ~40 s of CPU (a rejax compile), minutes on a shared machine
def test_train_reward_on_a_toml_task_with_a_jax_twin(tmp_path: Path) -> None:
    summary = grace.train_reward(NEAR, task=str(TOML), steps=1024, seeds=1, n_evals=1, algo_kwargs=TINY,
                                 out_dir=tmp_path / "out")
    assert summary["task"] == "point_reach" and summary["reward"]["ok"] and summary["baseline"]["ok"]
    assert summary["reward"]["curve_steps"] == [summary["env_steps_per_run"]] == [1024]
    assert -150 < summary["reward"]["true_return_mean"] < 0  # -distance per step, <= 100 steps
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["reward"] == summary["reward"]


@pytest.mark.slow
def test_grace_train_cli_on_a_toml_task_with_a_jax_twin(tmp_path: Path) -> None:
    reward = tmp_path / "near.py"
    reward.write_text(NEAR)
    res = run_cli("train", str(reward), "--task", str(TOML), "--steps", "2048", "--seeds", "1",
                  "--out", str(tmp_path / "out"), "--json")
    assert res.returncode == 0, res.stdout + res.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["task"] == "point_reach" and summary["reward"]["ok"] and summary["baseline"]["ok"]
    assert len(summary["reward"]["true_returns"]) == 1 and summary["reward"]["true_return_mean"] < 0
    assert summary["env_steps_per_run"] >= 2048


def _cartpole_in_python() -> Task:
    """A task built in Python (no name grace knows, no TOML): picklable factories."""
    names = ("x", "x_dot", "angle", "angle_dot")
    return Task(name="my_pole", description="Keep the pole up.", schema=ObsSchema(tuple(Field(n) for n in names)),
                action=ActionSpace("discrete", n=2), kind="keepalive",
                make_jax_env=partial(jax_envs.make, "CartPole-v1", True), jax_backend="gymnax", max_steps=500)


@pytest.mark.slow  # ~40 s of CPU (a rejax compile), minutes on a shared machine
def test_train_reward_on_a_task_built_in_python() -> None:
    task = _cartpole_in_python()
    src = "def reward(s, a, s_next, p):\n    return 1.0 - xp.abs(s_next.angle)\n"
    summary = grace.train_reward(src, task=task, steps=1024, seeds=2, n_evals=1, algo_kwargs=TINY)
    assert summary["task"] == "my_pole" and summary["reward"]["ok"] and summary["baseline"]["ok"]
    assert len(summary["reward"]["true_returns"]) == 2 and summary["reward"]["curve_steps"] == [1024]
    assert 0 < summary["reward"]["true_return_mean"] <= 500
    assert [sorted(late) for late in summary["reward"]["late_fields"]] == [sorted(task.schema.names)] * 2
    assert "lag" in summary  # None, or the seeds that lag with the fields that differ most


@pytest.mark.slow  # a rejax compile
def test_train_reward_trains_each_term_alone_in_the_same_batch() -> None:
    src = ("def reward(s, a, s_next, p):\n    up = 1.0 - xp.abs(s_next.angle)\n    still = -xp.abs(s_next.angle_dot)\n"
           "    return up + still, {'up': up, 'still': still}\n")
    summary = grace.train_reward(src, task=_cartpole_in_python(), steps=1024, seeds=2, n_evals=1, algo_kwargs=TINY,
                                 terms=True)
    assert list(summary["terms"]) == ["up", "still"] and summary["reward"]["ok"] and summary["baseline"]["ok"]
    for side in summary["terms"].values():
        assert side["ok"] and len(side["true_returns"]) == 2 and "normalised" in side and "lag" in side


def test_a_reward_that_does_not_trace_trains_nothing() -> None:
    with pytest.raises(RewardCheckError, match="does not trace"):
        grace.train_reward(NO_TRACE, task=_cartpole_in_python(), steps=2048, seeds=1)
    with pytest.raises(RewardCheckError, match="no_such_field"):
        grace.train_reward(NO_TRACE.replace("angle", "no_such_field"), task=_cartpole_in_python(), steps=2048)


def test_a_task_with_lambdas_cannot_travel() -> None:
    task = _cartpole_in_python()
    bad = Task(name="x", description="", schema=task.schema, action=task.action, kind="keepalive",
               make_jax_env=lambda: jax_envs.make("CartPole-v1"))
    with pytest.raises(ValueError, match="module-level functions"):
        grace.train_reward(NO_TRACE, task=bad, steps=2048)


@pytest.mark.parametrize(("source", "message", "flags"), [
    (NO_TRACE, "does not trace under JAX", ()),
    ("def reward(s, a, s_next, p):\n    return s_next.nope\n", "nope", ()),
    ("def reward(s, a, s_next, p):\n    return 1.0 - xp.abs(s_next.angle)\n", "no named terms", ("--terms",)),
])
def test_grace_train_exits_2_with_one_line_for_a_bad_reward(tmp_path: Path, source: str, message: str,
                                                            flags: tuple[str, ...]) -> None:
    reward = tmp_path / "bad.py"
    reward.write_text(source.replace("angle", "pole_angle"))
    res = run_cli("train", str(reward), "--task", "cartpole_fixed", "--steps", "2048", "--seeds", "1",
                  "--out", str(tmp_path / "out"), *flags)
    assert res.returncode == 2, res.stdout + res.stderr
    lines = (res.stdout + res.stderr).strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, lines
    assert not (tmp_path / "out").exists()  # nothing trained, nothing written
    assert get_task("cartpole_fixed").make_jax_env is not None


def _side(returns: list[float], start: float | None) -> dict:
    curve = [[start, r] for r in returns] if start is not None else [[r] for r in returns]
    steps = [0, 1000] if start is not None else [1000]
    return {"ok": True, "true_return_mean": sum(returns) / len(returns), "curve": curve, "curve_steps": steps}


def test_compare_normalises_by_the_untrained_policy_so_negative_returns_read_right() -> None:
    from grace.train import _verdict, compare

    # MountainCar-like: -200 untrained, true-reward PPO -121, the reward's PPO -129 (worse)
    c = compare(_side([-129.0], -200.0), _side([-121.0], -200.0))
    assert c["normalised"] == pytest.approx(71 / 79) and c["ratio"] > 1 and not c["within_5pct"]
    line = _verdict({**c, "baseline": {"true_return_mean": -121.0}})
    assert "normalised 0.899" in line and "ratio" not in line  # R / R_true is no share of negatives
    # CartPole-like: positive returns keep the ratio beside the normalised score
    c = compare(_side([450.0, 500.0], 20.0), _side([500.0, 500.0], 20.0))
    assert c["normalised"] == pytest.approx((475 - 20) / 480) and c["ratio"] == pytest.approx(0.95)
    line = _verdict({**c, "baseline": {"true_return_mean": 500.0}})
    assert "ratio 0.950" in line and "within 5%: True" in line
    # no step-0 point (n_evals=1), or true-reward PPO learned nothing over the untrained policy: no score
    assert compare(_side([-129.0], None), _side([-121.0], None))["normalised"] is None
    assert compare(_side([-150.0], -200.0), _side([-200.0], -200.0))["normalised"] is None
