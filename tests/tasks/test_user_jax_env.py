"""TOML tasks may name a JAX twin (`jax_env`); point_reach's twin matches its numpy env."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from grace.tasks import SchemaError, get_task
from grace.tasks.user import LazyFactory

ROOT = Path(__file__).resolve().parents[2]
TOML = ROOT / "examples/tasks/point_reach.toml"


def test_toml_jax_env_is_lazy_and_picklable() -> None:
    task = get_task(TOML)
    assert isinstance(task.make_jax_env, LazyFactory) and task.jax_backend == "gymnax"
    again = pickle.loads(pickle.dumps(task.make_jax_env))
    assert again == task.make_jax_env


def test_toml_jax_env_must_name_an_existing_module(tmp_path: Path) -> None:
    text = TOML.read_text().replace("point_reach_jax:make_jax_env", "no_such_module_x:make")
    (tmp_path / "t.toml").write_text(text)
    with pytest.raises(SchemaError, match="no_such_module_x"):
        get_task(tmp_path / "t.toml")
    (tmp_path / "u.toml").write_text(TOML.read_text().replace("point_reach_jax:make_jax_env", "point_reach_jax"))
    with pytest.raises(SchemaError, match="module:attribute"):
        get_task(tmp_path / "u.toml")


def test_point_reach_jax_twin_matches_numpy_env() -> None:
    import jax
    import jax.numpy as jnp

    task = get_task(TOML)
    env_np = task.make_env()
    env_jx, params = task.make_jax_env()
    assert env_jx.observation_space(params).shape == env_np.observation_space.shape
    step = jax.jit(env_jx.step_env)
    rng = np.random.default_rng(0)
    for episode in range(3):
        obs_np, _ = env_np.reset(seed=episode)
        obs_jx, state = env_jx.reset_env(jax.random.PRNGKey(episode), params)
        # the same start: the numpy env's initial state copied into the JAX state
        state = state.replace(pos=jnp.asarray(env_np.pos, jnp.float32), vel=jnp.zeros(2, jnp.float32),
                              target=jnp.asarray(env_np.target, jnp.float32))
        np.testing.assert_allclose(env_jx.get_obs(state), obs_np, atol=1e-6)
        for t in range(env_np.max_steps):
            # drive towards the target half the time so that some episodes reach it
            a = (np.clip(4.0 * obs_np[4:6] - 6.0 * obs_np[2:4], -1, 1) if episode < 2
                 else rng.uniform(-1.5, 1.5, 2)).astype(np.float32)
            obs_np, r_np, term, trunc, _ = env_np.step(a)
            obs_jx, state, r_jx, done, _ = step(jax.random.PRNGKey(t), state, jnp.asarray(a), params)
            np.testing.assert_allclose(np.asarray(obs_jx), obs_np, atol=1e-5)
            assert float(r_jx) == pytest.approx(r_np, abs=1e-5)
            assert bool(done) == (term or trunc)
            if term or trunc:
                break
        if episode < 2:
            assert term, "the scripted expert reaches the target"
