from __future__ import annotations

import numpy as np
import pytest

from grace.data.rollout import collect_expert
from grace.program import RewardProgram
from grace.tasks import Field, ObsSchema, SchemaError, get_task, task_names

BUILTIN = ["cartpole", "cartpole_fixed", "mountaincar", "mountaincar_fixed", "acrobot", "acrobot_fixed",
           "pendulum", "inverted_pendulum", "hopper", "walker2d", "ant", "humanoid"]


def test_builtin_tasks_registered():
    assert set(BUILTIN) <= set(task_names())


@pytest.mark.parametrize("name", BUILTIN)
def test_task_is_complete(name):
    t = get_task(name)
    assert len(t.description) > 80
    assert t.kind in ("goal", "keepalive")
    assert t.reference_reward is not None and t.reference_reward.exists()
    RewardProgram.from_file(t.reference_reward).validate(t.schema)
    # what a proposer sees never names or quotes the env's own reward (the search must not see it)
    seen = " ".join(t.prompt_info().values()).lower()
    assert t.true_reward_doc and t.true_reward_doc.lower() not in seen
    assert "reward" not in t.description.lower()
    assert t.make_env is not None and t.make_jax_env is not None
    # its PPO settings (grace's defaults under the task's own) are known fields, in whole minibatches
    from grace.fitness.ppo import ppo_settings

    ppo = ppo_settings(t)
    assert ppo["num_envs"] * ppo["num_steps"] % ppo["num_minibatches"] == 0


@pytest.mark.parametrize("name", ["cartpole", "mountaincar", "acrobot", "pendulum"])
def test_gym_env_matches_schema(name):
    t = get_task(name)
    env = t.make_env()
    obs, _ = env.reset(seed=0)
    assert obs.shape == (t.obs_dim,)
    env.close()


def test_fixed_horizon_never_terminates():
    env = get_task("cartpole_fixed").make_env()
    env.reset(seed=0)
    rewards, steps = [], 0
    while True:
        _, r, term, trunc, _ = env.step(0)  # always push left: the pole falls quickly
        rewards.append(r)
        steps += 1
        assert not term
        if trunc:
            break
    assert steps == 500
    assert rewards[0] == 1.0 and rewards[-1] == 0.0


def test_fixed_goal_tasks_collect_demos_on_terminating_env():
    traj = collect_expert(get_task("mountaincar_fixed"), 2)
    assert traj.terminated.all() and traj.lengths.max() < 200


def test_vector_fields_and_schema_errors():
    s = ObsSchema((Field("a"), Field("joints", size=3), Field("b")))
    assert s.width == 5 and s.slices["joints"] == slice(1, 4) and s.index_map()["b"] == 4
    with pytest.raises(SchemaError, match="duplicated"):
        ObsSchema((Field("a"), Field("a")))
    with pytest.raises(SchemaError, match="identifier"):
        ObsSchema((Field("not valid"),))
    with pytest.raises(SchemaError, match=r"width 3 .* width 5"):
        s.check(np.zeros((2, 3), np.float32))


def test_hopper_schema_has_vector_fields():
    t = get_task("hopper")
    assert t.obs_dim == 11
    assert any(f.size == 3 for f in t.schema.fields)


def test_unknown_task_message():
    with pytest.raises(SchemaError, match="unknown task 'nope'; built-in tasks: .*cartpole"):
        get_task("nope")


def test_user_task_from_toml(root):
    t = get_task(root / "examples/tasks/point_reach.toml")
    assert t.name == "point_reach" and t.obs_dim == 6 and t.action.dim == 2
    traj = collect_expert(t, 2)
    traj.validate(t)
    assert traj.terminated.all()


def test_toml_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\n')
    with pytest.raises(SchemaError, match="lacks: description, env, fields, action"):
        get_task(bad)
    bad.write_text("name = ")
    with pytest.raises(SchemaError, match="not valid TOML"):
        get_task(bad)
