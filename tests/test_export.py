"""Export: standalone reward modules and wrappers, checked in a fresh interpreter without grace."""

from __future__ import annotations

import importlib.util
import inspect
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from grace.data.rollout import collect_expert
from grace.data.trajectories import load_demos
from grace.export import TARGETS, export_file, export_program
from grace.program import RewardProgram
from grace.sandbox.views import view
from grace.tasks import Task, get_task

ROOT = Path(__file__).resolve().parents[1]
ROUND_TRIP_TASKS = (
    "cartpole", "cartpole_fixed", "mountaincar", "mountaincar_fixed",
    "acrobot", "acrobot_fixed", "pendulum", "inverted_pendulum",
)
JAX_TARGETS = ("brax", "gymnax")
TOL = 1e-5

# A program exercising what the reference rewards do not: a helper function, grace-only `xp`
# names (sigmoid, linalg_norm), a vector field, a comment above PARAMS, a multi-line string in
# debug(), and a reward that returns the total only.
FANCY = '''"""Hopper-ish: forward, upright, calm joints.

grace provenance:
  task: hopper
  fitness: 0.87
"""

# fitted by the search
PARAMS = {"calm": 0.123456789, "tilt": 0.2}


def upright(s, p):
    return xp.sigmoid(-xp.abs(s.torso_angle) / p["tilt"])


def reward(s, a, s_next, p):
    calm = -p["calm"] * xp.linalg_norm(s_next.joint_velocities, axis=-1)
    return s_next.forward_velocity + upright(s_next, p) + calm  # total only


def debug(s, a, s_next, p):
    return """first line
  indented second line"""
'''


def _xp_numpy() -> Any:
    try:
        from grace.sandbox.xp import XP_NUMPY

        return XP_NUMPY
    except ImportError:  # the sandbox namespace is not there yet: a plain namespace over numpy
        names = {n: getattr(np, n) for n in dir(np) if not n.startswith("_")}
        names["sigmoid"] = lambda x: 1.0 / (1.0 + np.exp(-x))
        names["linalg_norm"] = np.linalg.norm
        return types.SimpleNamespace(**names)


def reference_rewards(program: RewardProgram, task: Task, s: np.ndarray, a: np.ndarray, s_next: np.ndarray):
    """The program evaluated in-process with numpy and grace's views: (total, components)."""
    namespace: dict[str, Any] = {"xp": _xp_numpy()}
    exec(compile(program.source, "<reward>", "exec"), namespace)
    out = namespace["reward"](view(s, task.schema), a, view(s_next, task.schema), program.params)
    total, comps = out if isinstance(out, tuple) else (out, {})
    total = np.broadcast_to(np.asarray(total), s_next.shape[:-1])
    return total, {k: np.asarray(v) for k, v in comps.items()}


def load_module(path: Path, name: str = "exported") -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _reference(task_name: str) -> RewardProgram:
    task = get_task(task_name)
    assert task.reference_reward is not None
    return RewardProgram.from_file(task.reference_reward)


@pytest.fixture(scope="module")
def expert_transitions() -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for name in ROUND_TRIP_TASKS:
        task = get_task(name)
        path = ROOT / "demos" / f"{name}.npz"
        traj = load_demos(path, task) if path.is_file() else collect_expert(task, 2)
        tr = traj.transitions()
        out[name] = {"s": tr["s"], "a": tr["a"], "s_next": tr["s_next"]}
    return out


# The runner: fresh interpreter (`python -I`), grace made unimportable, every exported file
# loaded by path and evaluated on the saved transitions.
RUNNER = r'''
import importlib.abc, importlib.util, json, sys
from pathlib import Path

class NoGrace(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "grace" or name.startswith("grace."):
            raise ImportError("grace must not be imported by an exported module")

sys.meta_path.insert(0, NoGrace())
import numpy as np

here = Path(sys.argv[1])
jobs = json.loads((here / "jobs.json").read_text())
results = {}
for i, (name, target) in enumerate(jobs):
    spec = importlib.util.spec_from_file_location(f"exported_{i}", here / f"{name}__{target}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    d = np.load(here / f"{name}.npz")
    s, a, s_next = d["s"], d["a"], d["s_next"]
    total, comps = mod.reward_and_components(s, a, s_next)
    results[f"{name}/{target}/numpy"] = np.asarray(total)
    for k, v in comps.items():
        results[f"{name}/{target}/comp/{k}"] = np.asarray(v)
    if target in ("brax", "gymnax"):
        import jax, jax.numpy as jnp
        fn = jax.jit(lambda s, a, s2: mod.reward_fn(s, a, s2, jnp))
        results[f"{name}/{target}/jax"] = np.asarray(fn(s, a, s_next))
        one = jax.vmap(lambda s, a, s2: mod.reward_fn(s, a, s2, jnp))(s[:8], a[:8], s_next[:8])
        results[f"{name}/{target}/vmap"] = np.asarray(one)
    if target == "imitation":
        done = np.zeros(len(s), dtype=bool)
        results[f"{name}/{target}/imitation"] = mod.imitation_reward(s, a, s_next, done)
assert not any(m == "grace" or m.startswith("grace.") for m in sys.modules)
np.savez(here / "results.npz", **results)
'''


def run_fresh(tmp: Path, jobs: list[tuple[str, str]]) -> dict[str, np.ndarray]:
    (tmp / "jobs.json").write_text(json.dumps(jobs))
    (tmp / "runner.py").write_text(RUNNER)
    proc = subprocess.run(
        [sys.executable, "-I", str(tmp / "runner.py"), str(tmp)],
        cwd=tmp, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    with np.load(tmp / "results.npz") as data:
        return dict(data)


def test_round_trip_every_task_and_target_in_a_fresh_interpreter(tmp_path, expert_transitions):
    jobs = []
    for name in ROUND_TRIP_TASKS:
        task, program = get_task(name), _reference(name)
        np.savez(tmp_path / f"{name}.npz", **expert_transitions[name])
        for target in TARGETS:
            export_file(task.reference_reward, task, target, tmp_path / f"{name}__{target}.py")
            jobs.append((name, target))
    hopper = get_task("hopper")
    rng = np.random.default_rng(0)
    fancy = {"s": rng.normal(size=(64, hopper.obs_dim)).astype(np.float32),
             "a": rng.uniform(-1, 1, (64, 3)).astype(np.float32),
             "s_next": rng.normal(size=(64, hopper.obs_dim)).astype(np.float32)}
    np.savez(tmp_path / "fancy.npz", **fancy)
    for target in ("module", "brax"):
        (tmp_path / f"fancy__{target}.py").write_text(export_program(RewardProgram(FANCY), hopper, target))
        jobs.append(("fancy", target))

    results = run_fresh(tmp_path, jobs)

    for name, target in jobs:
        task = hopper if name == "fancy" else get_task(name)
        program = RewardProgram(FANCY) if name == "fancy" else _reference(name)
        data = fancy if name == "fancy" else expert_transitions[name]
        total, comps = reference_rewards(program, task, data["s"], data["a"], data["s_next"])
        got = results[f"{name}/{target}/numpy"]
        assert got.shape == total.shape == (len(data["s"]),)
        np.testing.assert_allclose(got, total, rtol=TOL, atol=TOL, err_msg=f"{name}/{target}")
        for key, value in comps.items():
            np.testing.assert_allclose(results[f"{name}/{target}/comp/{key}"], value, rtol=TOL, atol=TOL)
        if target in JAX_TARGETS:
            np.testing.assert_allclose(results[f"{name}/{target}/jax"], total, rtol=TOL, atol=TOL)
            np.testing.assert_allclose(results[f"{name}/{target}/vmap"], total[:8], rtol=TOL, atol=TOL)
        if target == "imitation":
            out = results[f"{name}/{target}/imitation"]
            assert out.dtype == np.float32 and out.shape == (len(data["s"]),)
            np.testing.assert_allclose(out, total, rtol=TOL, atol=TOL)


def test_exported_text_keeps_the_program_readable_and_exact():
    hopper = get_task("hopper")
    text = export_program(RewardProgram(FANCY), hopper, "module")
    compile(text, "exported.py", "exec")
    assert "grace provenance:" in text and "  fitness: 0.87" in text
    assert "# fitted by the search\nPARAMS = {\"calm\": 0.123456789, \"tilt\": 0.2}" in text
    assert '        return s_next.forward_velocity + upright(s_next, p) + calm  # total only' in text
    assert '    return """first line\n  indented second line"""' in text  # string content untouched
    assert "joint_velocities = property(lambda self: self.raw[..., 8:11])" in text
    assert "import grace" not in text and "from grace" not in text
    for target in ("module", "imitation"):
        lines = export_program(_reference("cartpole"), get_task("cartpole"), target).splitlines()
        imports = [ln for ln in lines if ln.startswith(("import ", "from "))]
        assert imports == ["from __future__ import annotations", "import functools", "import numpy"]


def test_gymnasium_wrapper_in_a_plain_loop(tmp_path):
    import gymnasium

    task = get_task("cartpole")
    mod = load_module(export_file(task.reference_reward, task, "gymnasium", tmp_path / "cp.py"))
    env = mod.GraceReward(gymnasium.make("CartPole-v1"))
    assert isinstance(env, gymnasium.Wrapper)
    obs, _ = env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(50):
        action = int(rng.integers(2))
        next_obs, reward, terminated, truncated, info = env.step(action)
        assert isinstance(reward, float)
        assert reward == pytest.approx(float(mod.reward_fn(obs, np.asarray(action), next_obs)), abs=1e-6)
        assert info["env_reward"] == 1.0
        assert set(info["grace_components"]) == {"upright", "centred"}
        obs = next_obs
        if terminated or truncated:
            obs, _ = env.reset()
    env.close()


@pytest.fixture(scope="module")
def brax_module(tmp_path_factory) -> types.ModuleType:
    task = get_task("inverted_pendulum")
    path = tmp_path_factory.mktemp("brax") / "ip_brax.py"
    return load_module(export_file(task.reference_reward, task, "brax", path), "ip_brax")


def test_brax_wrapper_under_jit_and_vmap(brax_module):
    import jax
    from brax import envs

    env = brax_module.GraceReward(envs.get_environment("inverted_pendulum"))
    assert isinstance(env, envs.Wrapper)
    reset, step = jax.jit(env.reset), jax.jit(env.step)
    state = reset(jax.random.PRNGKey(0))
    assert {"env_reward", "grace_upright", "grace_centred"} <= set(state.metrics)
    for i in range(5):
        action = jax.numpy.full((env.action_size,), 0.3 * (-1) ** i)
        nxt = step(state, action)
        expected = brax_module.reward_fn(np.asarray(state.obs), np.asarray(action), np.asarray(nxt.obs))
        assert float(nxt.reward) == pytest.approx(float(expected), abs=1e-5)
        assert float(nxt.metrics["env_reward"]) == 1.0
        state = nxt
    # batched: vmap over 3 envs
    states = jax.tree.map(lambda x: jax.numpy.stack([x, x, x]), state)
    actions = jax.numpy.zeros((3, env.action_size))
    nxt = jax.jit(jax.vmap(env.step))(states, actions)
    expected = brax_module.reward_fn(np.asarray(states.obs), np.asarray(actions), np.asarray(nxt.obs))
    np.testing.assert_allclose(np.asarray(nxt.reward), expected, atol=1e-5)


@pytest.mark.slow
def test_brax_wrapper_trains_with_brax_ppo(brax_module):
    from brax import envs
    from brax.training.agents.ppo import train as ppo

    env = brax_module.GraceReward(envs.get_environment("inverted_pendulum"))
    progress: list[dict[str, Any]] = []
    ppo.train(
        environment=env, num_timesteps=4096, episode_length=100, num_envs=16, batch_size=16,
        num_minibatches=4, unroll_length=8, num_updates_per_batch=2, num_evals=2,
        num_eval_envs=4, seed=0, progress_fn=lambda step, metrics: progress.append(metrics),
    )
    assert progress and all(np.isfinite(float(m["eval/episode_reward"])) for m in progress)


def test_gymnax_wrapper_under_jit(tmp_path):
    import gymnax
    import jax

    task = get_task("cartpole")
    mod = load_module(export_file(task.reference_reward, task, "gymnax", tmp_path / "cp_gymnax.py"))
    base, params = gymnax.make("CartPole-v1")
    env = mod.GraceReward(base)
    assert env.num_actions == 2  # attributes pass through to the wrapped env
    key = jax.random.PRNGKey(0)
    obs, state = jax.jit(env.reset)(key, params)
    step, base_step = jax.jit(env.step), jax.jit(base.step)
    dones = 0
    for _ in range(60):
        key, k_act, k_step = jax.random.split(key, 3)
        action = jax.random.randint(k_act, (), 0, 2)
        nobs, nstate, reward, done, info = step(k_step, state, action, params)
        bobs, _, breward, bdone, _ = base_step(k_step, state, action, params)
        np.testing.assert_allclose(np.asarray(nobs), np.asarray(bobs))  # same dynamics and reset
        assert bool(done) == bool(bdone) and float(info["env_reward"]) == float(breward)
        assert set(info["grace_components"]) == {"upright", "centred"}
        if not bool(done):
            expected = mod.reward_fn(np.asarray(obs), np.asarray(action), np.asarray(nobs))
            assert float(reward) == pytest.approx(float(expected), abs=1e-5)
        dones += bool(done)
        obs, state = nobs, nstate
    assert dones >= 1  # a random policy drops the pole within 60 steps: the auto-reset path ran


def test_imitation_reward_fn_signature_and_batch(tmp_path):
    task = get_task("pendulum")
    mod = load_module(export_file(task.reference_reward, task, "imitation", tmp_path / "pend.py"))
    params = list(inspect.signature(mod.imitation_reward).parameters.values())
    assert [p.name for p in params] == ["state", "action", "next_state", "done"]
    assert all(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params)
    rng = np.random.default_rng(0)
    s, s2 = rng.normal(size=(7, 3)), rng.normal(size=(7, 3))
    out = mod.imitation_reward(s, rng.normal(size=(7, 1)), s2, np.zeros(7, dtype=bool))
    assert isinstance(out, np.ndarray) and out.shape == (7,) and out.dtype == np.float32
    total, _ = reference_rewards(_reference("pendulum"), task, s, rng.normal(size=(7, 1)), s2)
    np.testing.assert_allclose(out, total, rtol=TOL, atol=TOL)


def test_unknown_target_names_the_valid_ones():
    task = get_task("cartpole")
    with pytest.raises(ValueError, match="module, gymnasium, brax, gymnax, imitation"):
        export_program(_reference("cartpole"), task, "stable-baselines")
