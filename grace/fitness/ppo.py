"""Quick PPO fitness on JAX: many candidate rewards trained in one compiled program.

`train_candidates(task, sources, steps, seeds)` compiles every source with the sandbox's
restricted compiler (jax-backed `xp`), checks that each traces (`jax.eval_shape`), puts the good
ones into one `lax.switch` program vmapped over (candidate x seed) (`grace.fitness.ppo_batch`),
and scores each trained policy:

- reward-design mode (`ppo-true`): true return mean/std over seeds and success rate, rolled out
  on the task's JAX env with its own reward (the fixed-horizon reward for fixed-horizon tasks);
- IRL mode (`ppo`): `score_states(obs_batch) -> scores`, a discriminator fixed per round that does
  not depend on the candidate; the mean score of the policy's visited states.

It runs in the calling process: call it inside a jax-profile sandbox worker (`train_in_worker`),
never in the main process (reward code, and JAX after fork, belong in a spawned worker).
`collect_policy_rollouts` trains on one reward and returns the policy's episodes as
`grace.data.trajectories.Trajectories` (GRACE's active negatives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from grace.data.trajectories import Episode, Trajectories
from grace.program import RewardProgram
from grace.tasks import Task, get_task

TRUE_REWARD = "<true reward>"
"""A `sources` entry that trains on the env's own reward (the baseline of `grace train`)."""

def _compile(source: str, schema: Any) -> Any:
    """Compile reward code to a jax-traceable `compiled(s_raw, a, s_next_raw, params)` through
    the sandbox's restricted compiler with the jax-backed `xp` (the only way reward code reaches
    JAX). Called inside a jax-profile sandbox worker."""
    from grace.sandbox.compile import compile_reward

    return compile_reward(source, schema, backend="jax")


def _branch(compiled: Any, params: dict[str, float]) -> Callable[..., Any]:
    def branch(s: Any, a: Any, s_next: Any, r_env: Any) -> Any:
        return compiled(s, a, s_next, params)[0]

    return branch


def _true_branch(s: Any, a: Any, s_next: Any, r_env: Any) -> Any:
    return r_env


def _episodes(final: dict[str, np.ndarray], act_dim: int | None) -> list[Episode]:
    """Episodes of one (candidate, seed) rollout, cut at their true length. `act_dim`: actions
    are reshaped to (T, act_dim) for continuous tasks (1-D actions come back flat), None keeps
    discrete (T,) actions."""
    out = []
    for e in range(final["returns"].shape[0]):
        n = int(final["lengths"][e])
        obs = np.concatenate([final["obs0"][e][None], final["obs"][e][:n]]).astype(np.float32)
        acts = np.asarray(final["actions"][e][:n])
        if act_dim is not None:
            acts = acts.reshape(n, act_dim).astype(np.float32)
        out.append(Episode(obs=obs, actions=acts,
                           rewards=np.asarray(final["rewards"][e][:n], np.float32),
                           terminated=bool(final["terminated"][e]),
                           truncated=not bool(final["terminated"][e])))
    return out


def train_candidates(
    task: Task | str,
    sources: Sequence[str],
    steps: int,
    seeds: int = 2,
    seed: int = 0,
    algo_kwargs: dict[str, Any] | None = None,
    score_states: Callable[[np.ndarray], np.ndarray] | None = None,
    n_evals: int = 1,
    eval_episodes: int = 8,
    keep_trajectories: bool = True,
) -> list[dict[str, Any]]:
    """Train PPO on every candidate reward (one compile), `seeds` runs each; score the policies.

    Returns one dict per source, in order: `ok`, `error` (why a candidate could not run),
    `true_return_mean` / `true_return_std` (over seeds of the per-seed mean episode return),
    `true_returns` (per seed), `success_rate` (task.success over all eval episodes, None if the
    task has no metric) and `success_per_seed`, `irl_score` (mean `score_states` over visited states, or None),
    `curve` (seeds x n_evals mean true return; `curve_steps` its x axis), `env_steps` (per run),
    `compile_s` / `run_s` (shared by the batch), and `trajectories` (the final policy's episodes
    over all seeds) when `keep_trajectories`.
    """
    import jax

    from grace.fitness.ppo_batch import action_spec, build_trainer, check_branch, run_batch

    task = get_task(task)
    if task.make_jax_env is None:
        raise ValueError(f"task {task.name!r} has no JAX env; PPO fitness needs one")
    env, env_params = task.make_jax_env()
    discrete = task.action.kind == "discrete"
    act = action_spec(env, env_params)
    results: list[dict[str, Any]] = [{"ok": False, "error": None} for _ in sources]
    branches, index = [], []
    for i, src in enumerate(sources):
        if src == TRUE_REWARD:
            branch = _true_branch
        else:
            try:
                prog = RewardProgram(src).validate(task.schema)
                branch = _branch(_compile(src, task.schema), prog.params)
            except Exception as exc:  # noqa: BLE001 - reported per candidate
                results[i]["error"] = f"{type(exc).__name__}: {exc}"
                continue
        err = check_branch(branch, task.obs_dim, act)
        if err:
            results[i]["error"] = err
            continue
        branches.append(branch)
        index.append(i)
    if not branches:
        return results
    fn, info = build_trainer(env, env_params, branches, discrete, steps, task.max_steps,
                             algo_kwargs, n_evals=n_evals, final_episodes=eval_episodes)
    curve, final, compile_s, run_s = run_batch(fn, len(branches), seeds, seed)
    for j, i in enumerate(index):
        per_seed = {k: np.asarray(v[j]) for k, v in final.items()}
        act_dim = None if discrete else task.action.dim
        eps = [ep for s in range(seeds) for ep in _episodes({k: v[s] for k, v in per_seed.items()}, act_dim)]
        seed_means = per_seed["returns"].mean(axis=-1)
        success, success_seeds = None, None
        if task.success is not None:
            hits = np.array([task.success(float(ep.rewards.sum()), ep.terminated, ep.obs)
                             for ep in eps], dtype=float).reshape(seeds, -1)
            success, success_seeds = float(hits.mean()), hits.mean(axis=1).tolist()
        irl = None
        if score_states is not None:
            states = np.concatenate([ep.obs[1:] for ep in eps])
            irl = float(np.mean(np.asarray(score_states(states), dtype=np.float64)))
        res = {
            "ok": True, "error": None, "true_return_mean": float(seed_means.mean()),
            "true_return_std": float(seed_means.std()), "true_returns": seed_means.tolist(),
            "success_rate": success, "success_per_seed": success_seeds, "irl_score": irl,
            "curve": np.asarray(curve[j]).reshape(seeds, -1).tolist(),
            "curve_steps": info["curve_steps"], "env_steps": info["env_steps"],
            "compile_s": compile_s, "run_s": run_s, "batch_size": len(branches),
        }
        if keep_trajectories:
            res["trajectories"] = Trajectories.from_episodes(
                eps, meta={"task": task.name, "policy": "ppo", "steps": info["env_steps"],
                           "seed": seed, "reward": "true" if sources[i] == TRUE_REWARD
                           else RewardProgram(sources[i]).program_id})
        results[i] = res
    jax.clear_caches()
    return results


def collect_policy_rollouts(task: Task | str, source: str, steps: int, seeds: int = 1,
                            seed: int = 0, episodes: int = 16,
                            algo_kwargs: dict[str, Any] | None = None) -> Trajectories:
    """Train PPO on `source` and return the trained policy's episodes (GRACE's active negatives).

    `episodes` per seed; `meta["env_steps"]` is the PPO budget spent (it counts in a run's
    env-step budget). Raises ValueError if the reward cannot be trained.
    """
    res = train_candidates(task, [source], steps, seeds=seeds, seed=seed, algo_kwargs=algo_kwargs,
                           eval_episodes=episodes)[0]
    if not res["ok"]:
        raise ValueError(f"cannot train PPO on this reward: {res['error']}")
    traj: Trajectories = res["trajectories"]
    traj.meta.update(env_steps=res["env_steps"] * seeds, true_return_mean=res["true_return_mean"])
    return traj


def train_in_worker(ctx: Any, compiled_unused: Any, task_name: str, sources: Sequence[str],
                    steps: int, seeds: int = 2, seed: int = 0,
                    algo_kwargs: dict[str, Any] | None = None,
                    score_states: Callable[[np.ndarray], np.ndarray] | None = None,
                    keep_trajectories: bool = False, n_evals: int = 1) -> list[dict[str, Any]]:
    """Trusted entry point for a jax-profile sandbox worker (`fn(ctx, compiled, *args)`).

    The task travels by name and `score_states` must be picklable (a module-level function or a
    fitted model object), since arguments cross a spawn boundary.
    """
    return train_candidates(task_name, list(sources), steps, seeds=seeds, seed=seed,
                            algo_kwargs=algo_kwargs, score_states=score_states,
                            keep_trajectories=keep_trajectories, n_evals=n_evals)
