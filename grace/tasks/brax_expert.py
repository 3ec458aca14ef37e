"""Experts for the Brax locomotion tasks: brax's own PPO (brax.training.agents.ppo) on the true
reward, its policy saved as plain arrays (no pickle) and replayed deterministically for demos.

`train_expert(name, steps, seed, out)` trains and writes the policy file; `load_expert(name)` is
the task's `expert` (a `Policy`: the mode of the trained Gaussian policy); `grace demos collect
--task hopper` trains first when no policy file exists (`default_params_path`).

Settings (`EXPERT_PPO`, brax `ppo.train` keyword arguments): ant and humanoid are brax's published
rows (notebooks/training.ipynb `train_fn`); brax publishes SAC, not PPO, for hopper and walker2d,
so theirs are small-batch settings for a CPU (2048 env steps per update: 32 envs x 64 steps, 4
minibatches of 512 steps, 10 epochs, as in the MuJoCo PPO of Schulman et al. 2017) with the discount of
brax's hopper / walker2d configs (0.997). Evaluation during training is cut to 8 episodes
(brax's default 128 costs more than the training on a CPU).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_SMALL = {"num_envs": 32, "batch_size": 8, "num_minibatches": 4, "unroll_length": 64,
          "num_updates_per_batch": 10, "discounting": 0.997, "learning_rate": 3e-4,
          "entropy_cost": 1e-3, "reward_scaling": 1.0, "normalize_observations": True,
          "clipping_epsilon": 0.2, "gae_lambda": 0.95}
EXPERT_PPO: dict[str, dict[str, Any]] = {
    "hopper": _SMALL,
    "walker2d": _SMALL,
    # brax notebooks/training.ipynb train_fn['ant'] (num_evals, seed and episode_length aside)
    "ant": {"num_envs": 4096, "batch_size": 2048, "num_minibatches": 32, "unroll_length": 5,
            "num_updates_per_batch": 4, "discounting": 0.97, "learning_rate": 3e-4,
            "entropy_cost": 1e-2, "reward_scaling": 10.0, "normalize_observations": True},
    # brax notebooks/training.ipynb train_fn['humanoid']
    "humanoid": {"num_envs": 2048, "batch_size": 1024, "num_minibatches": 32, "unroll_length": 10,
                 "num_updates_per_batch": 8, "discounting": 0.97, "learning_rate": 3e-4,
                 "entropy_cost": 1e-3, "reward_scaling": 0.1, "normalize_observations": True},
}
EXPERT_STEPS = {"hopper": 3_000_000, "walker2d": 5_000_000, "ant": 50_000_000, "humanoid": 50_000_000}
"""Default training budgets (env steps): brax's rows for ant / humanoid."""
EPISODE_LENGTH = 1000
EVAL_EPISODES = 8


class ExpertError(ValueError):
    """No policy file, or a malformed one. The message is one line."""


def default_params_path(name: str) -> Path:
    """Where `grace demos collect` keeps a trained expert: ~/.cache/grace/experts/NAME-brax-ppo.npz."""
    return Path.home() / ".cache" / "grace" / "experts" / f"{name}-brax-ppo.npz"


def expert_doc(name: str) -> str:
    return (f"brax PPO on the true reward ({EXPERT_STEPS[name]:,} env steps by default; "
            "grace/tasks/brax_expert.py)")


def _networks(env: Any) -> Any:
    from brax.training.acme import running_statistics
    from brax.training.agents.ppo import networks as ppo_networks

    return ppo_networks.make_ppo_networks(env.observation_size, env.action_size,
                                          preprocess_observations_fn=running_statistics.normalize)


def _template(env: Any) -> Any:
    """(normalizer params, policy params) shaped as brax's train builds them: unflatten target."""
    import jax
    import jax.numpy as jnp
    from brax.training.acme import running_statistics, specs

    nets = _networks(env)
    norm = running_statistics.init_state(specs.Array((env.observation_size,), jnp.dtype("float32")))
    return norm, nets.policy_network.init(jax.random.PRNGKey(0))


def check_budget(name: str, steps: int) -> None:
    """ExpertError unless `name` has a brax expert and `steps` is positive."""
    if name not in EXPERT_PPO:
        raise ExpertError(f"no brax expert for {name!r}; known: {', '.join(EXPERT_PPO)}")
    if steps <= 0:
        raise ExpertError(f"expert training steps must be positive, got {steps}")


def train_expert(name: str, steps: int, seed: int, out: Path,
                 progress: Callable[[int, float], None] | None = None, **overrides: Any) -> dict[str, Any]:
    """Train brax PPO on `name`'s true reward for `steps` env steps; write the policy to `out`.

    `progress(env_steps, eval_return)` is called at each of brax's evaluations. Returns the
    provenance written into the file (settings, seed, steps, evaluation curve, seconds)."""
    check_budget(name, steps)
    import brax
    from brax import envs
    from brax.training.agents.ppo import train as ppo

    settings = dict(EXPERT_PPO[name], **overrides)
    env = envs.get_environment(name)
    curve: list[tuple[int, float]] = []
    sps: list[float] = []
    start, cpu_start = time.perf_counter(), time.process_time()

    def on_eval(step: int, metrics: dict[str, Any]) -> None:
        ret = float(metrics.get("eval/episode_reward", np.nan))
        curve.append((int(step), ret))
        if "training/sps" in metrics:
            sps.append(float(metrics["training/sps"]))
        if progress is not None:
            progress(int(step), ret)

    _, params, _ = ppo.train(environment=env, num_timesteps=steps, episode_length=EPISODE_LENGTH,
                             seed=seed, num_evals=max(2, min(20, steps // 100_000)),
                             num_eval_envs=EVAL_EPISODES, deterministic_eval=True,
                             progress_fn=on_eval, **settings)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    prov = {"task": name, "trainer": "brax.training.agents.ppo", "brax": brax.__version__,
            "env_steps": steps, "seed": seed, "settings": settings, "eval_curve": curve,
            "final_eval_return": curve[-1][1] if curve else None, "train_seconds": round(seconds, 1),
            "cpu_seconds": round(cpu, 1), "steps_per_second": round(steps / seconds, 1),
            "steps_per_cpu_second": round(steps / max(cpu, 1e-9), 1),
            "training_sps": [round(x, 1) for x in sps]}  # brax's own: env steps/s of each training span
    save_policy(out, (params[0], params[1]), prov)
    return prov


def save_policy(out: Path, params: Any, provenance: dict[str, Any]) -> None:
    """Write (normalizer params, policy params) as plain arrays plus the provenance as JSON."""
    import jax

    out.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"p{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(params))}
    np.savez_compressed(out, meta_json=np.array(json.dumps(provenance)), **arrays)


class BraxPolicy:
    """The mode of a saved brax PPO policy: `pi(obs, rng) -> action` (one observation)."""

    def __init__(self, name: str, path: Path) -> None:
        import jax
        from brax import envs
        from brax.training.agents.ppo import networks as ppo_networks

        try:
            with np.load(path, allow_pickle=False) as f:
                self.provenance = json.loads(str(f["meta_json"]))
                leaves = [f[f"p{i}"] for i in range(sum(k.startswith("p") for k in f.files))]
        except (OSError, KeyError, ValueError) as exc:
            raise ExpertError(f"cannot read expert policy {path}: {exc}") from None
        env = envs.get_environment(name)
        treedef = jax.tree_util.tree_structure(_template(env))
        if treedef.num_leaves != len(leaves):
            raise ExpertError(f"expert policy {path} does not fit brax's {name} networks")
        params = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(x) for x in leaves])
        self.provenance["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
        make = ppo_networks.make_inference_fn(_networks(env))
        self._act = jax.jit(make((params[0], params[1], None), deterministic=True))
        self._key = jax.random.PRNGKey(0)

    def __call__(self, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        action, _ = self._act(np.asarray(obs, np.float32), self._key)
        return np.asarray(action, np.float32)


def load_expert(name: str, path: Path | None = None) -> BraxPolicy:
    """The task's expert: the saved policy at `path` (default: `default_params_path(name)`)."""
    path = path or default_params_path(name)
    if not path.is_file():
        raise ExpertError(f"no trained {name} expert at {path}; `grace demos collect --task {name}` trains one")
    return BraxPolicy(name, path)
