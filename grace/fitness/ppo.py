"""Quick PPO fitness on JAX: many candidate rewards trained in one compiled program.

`run_ppo(task, job)` is THE way the host trains PPO: it sends a `grace.types.PPOJob` and the
task (as a `TaskRef`) to a jax-profile sandbox worker, where `train_candidates` runs.

`train_candidates(task, job)` compiles every source with the sandbox's
restricted compiler (jax-backed `xp`), checks that each traces (`jax.eval_shape`), puts the good
ones into one `lax.switch` program vmapped over (candidate x seed) (`grace.fitness.ppo_batch`),
and scores each trained policy:

- reward-design mode (`ppo-true`): true return mean/std over seeds and success rate, rolled out
  on the task's JAX env with its own reward (the fixed-horizon reward for fixed-horizon tasks);
- IRL mode (`ppo`): `score_states(obs_batch) -> scores`, a discriminator fixed per round that does
  not depend on the candidate; the mean score of the policy's visited states.

`train_candidates` runs in the calling process: the host calls `run_ppo` (or `check_rewards`),
never `train_candidates` itself (reward code, and JAX after fork, belong in a spawned worker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from grace.data.trajectories import Episode, Trajectories
from grace.fitness.seed_spread import late_field_means
from grace.program import FLOOR_KEY, TERMINAL_KEY, RewardProgram
from grace.tasks import Task
from grace.types import PPOJob, PPOResult, TaskRef

WORKER_FN = "grace.fitness.ppo:train_in_worker"
CHECK_FN = "grace.fitness.ppo:check_in_worker"

TRUE_REWARD = "<true reward>"
"""A `sources` entry that trains on the env's own reward (the baseline of `grace train`)."""


def _compile(source: str, schema: Any) -> Any:
    """Compile reward code to a jax-traceable `compiled(s_raw, a, s_next_raw, params)` through
    the sandbox's restricted compiler with the jax-backed `xp` (the only way reward code reaches
    JAX). Called inside a jax-profile sandbox worker."""
    from grace.sandbox.compile import compile_reward

    return compile_reward(source, schema, backend="jax")


def _branch(compiled: Any, params: dict[str, float], gamma: float) -> Callable[..., Any]:
    """What PPO is paid for one transition, as (reward, shaping): the program's total less the
    shift of its terminal value, and its shaping (`potential`), both with PPO's own discount
    `gamma`; the rest of the terminal value, its lump, is the branch's `terminal` attribute, which
    `CandidateRewardEnv` pays on termination (`grace.fitness.returns.payment`). Together they are
    exactly what `grace eval` and the exports pay (`grace.fitness.returns.applied_reward`); PPO's
    `reward_transform` applies per step to the reward and to the lump as the steps it stands for,
    never to the shaping (`grace.fitness.ppo_batch.REWARD_TRANSFORMS`)."""
    import jax.numpy as jnp

    from grace.fitness.returns import payment, shaping_term

    shaped = bool(getattr(compiled, "has_potential", False))
    floor = params.get(FLOOR_KEY)
    shift, lump = payment(float(params.get(TERMINAL_KEY, 0.0)), None if floor is None else float(floor), gamma)

    def branch(s: Any, a: Any, s_next: Any, r_env: Any, terminated: Any) -> Any:
        r = jnp.asarray(compiled(s, a, s_next, params)[0], jnp.float32) - jnp.float32(shift)
        if not shaped:
            return r, jnp.zeros((), jnp.float32)
        term = jnp.asarray(terminated, dtype=bool)
        f = shaping_term(compiled.potential(s, params), compiled.potential(s_next, params), term, gamma, jnp)
        return r, jnp.asarray(f, jnp.float32)

    branch.terminal = lump  # type: ignore[attr-defined]
    return branch


def _true_branch(s: Any, a: Any, s_next: Any, r_env: Any, terminated: Any) -> Any:
    import jax.numpy as jnp

    return r_env, jnp.zeros((), jnp.float32)


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


def _as_compared(episodes: Sequence[Episode], inner_ends: np.ndarray) -> tuple[list[np.ndarray], list[bool]]:
    """(states, terminated) of each episode as a policy is compared with the experts: an episode on
    a fixed-horizon env whose wrapped env terminated (`inner_ends[e]` > 0, `ppo_batch.rollout`)
    ends there, terminated, as the experts' episodes in the terminating env did; what the policy
    does after is not compared (no expert was seen there). Without it, every state of the episode."""
    out: tuple[list[np.ndarray], list[bool]] = ([], [])
    for ep, end in zip(episodes, inner_ends, strict=True):
        out[0].append(ep.obs[1 : int(end) + 1] if end > 0 else ep.obs[1:])
        out[1].append(True if end > 0 else ep.terminated)
    return out


def _branches(task: Task, env: Any, env_params: Any, sources: Sequence[str], gamma: float | None = None
              ) -> tuple[list[str | None], list[Callable[..., Any]], list[int]]:
    """Compile and trace every source: (error per source, good branches, their indices). Each
    branch pays the applied reward (shaping with discount `gamma`, default: the task's PPO
    discount, and the terminal value included)."""
    from grace.fitness.ppo_batch import action_spec, check_branch

    if gamma is None:
        gamma = float(ppo_settings(task)["gamma"])
    act = action_spec(env, env_params)
    errors: list[str | None] = [None] * len(sources)
    branches, index = [], []
    for i, src in enumerate(sources):
        if src == TRUE_REWARD:
            branch = _true_branch
        else:
            try:
                prog = RewardProgram(src).validate(task.schema)
                branch = _branch(_compile(src, task.schema), prog.params, gamma)
            except Exception as exc:  # noqa: BLE001 - reported per candidate
                errors[i] = f"{type(exc).__name__}: {exc}"
                continue
        errors[i] = check_branch(branch, task.obs_dim, act)
        if errors[i] is None:
            branches.append(branch)
            index.append(i)
    return errors, branches, index


def ppo_settings(task: Task, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The rejax PPO settings a task trains with: grace's defaults for its action kind
    (`[ppo.discrete]` / `[ppo.continuous]`), the task's own `Task.ppo` over them, and `overrides`
    (field names, e.g. {"gamma": 0.9}; a run sends `PPOConfig.overrides`) over both.
    ValueError names an unknown setting."""
    from grace.config import PPOConfig

    default = PPOConfig()
    hyper = default.discrete if task.action.kind == "discrete" else default.continuous
    over = dict(overrides or {})
    agent = over.pop("agent_kwargs", None)  # rejax's nesting, accepted for old callers
    if isinstance(agent, dict):
        over.update(agent)
    try:
        return hyper.with_settings(dict(task.ppo)).with_settings(over).algo_kwargs()
    except TypeError as exc:
        raise ValueError(f"bad PPO setting: {exc}") from None


def _jax_env(task: Task) -> tuple[Any, Any]:
    if task.make_jax_env is None:
        raise ValueError(f"task {task.name!r} has no JAX env; PPO needs one (a TOML task: jax_env = \"module:factory\")")
    return task.make_jax_env()


def train_candidates(task: Task | TaskRef | str, job: PPOJob) -> list[PPOResult]:
    """Train PPO on every source of `job` (one compile), `job.seeds` runs each; score the policies.

    One PPOResult per source, in order (`error` says why a candidate could not run). Runs in
    this process: call it inside a jax-profile sandbox worker (`run_ppo`).
    """
    import jax

    from grace.fitness.ppo_batch import build_trainer, run_batch

    task = TaskRef.of(task).resolve() if not isinstance(task, Task) else task
    env, env_params = _jax_env(task)
    discrete = task.action.kind == "discrete"
    settings = ppo_settings(task, job.algo_kwargs)
    errors, branches, index = _branches(task, env, env_params, job.sources, float(settings["gamma"]))
    results = [PPOResult(error=e or "not trained") for e in errors]
    if not branches:
        return results
    fn, info = build_trainer(env, env_params, branches, discrete, job.steps, task.max_steps,
                             settings, n_evals=job.n_evals, final_episodes=job.eval_episodes)
    seeds = job.seeds
    curve, final, compile_s, run_s = run_batch(fn, len(branches), seeds, job.seed)
    columns = task.schema.index_map()
    for j, i in enumerate(index):
        per_seed = {k: np.asarray(v[j]) for k, v in final.items()}
        act_dim = None if discrete else task.action.dim
        by_seed = [_episodes({k: v[s] for k, v in per_seed.items()}, act_dim) for s in range(seeds)]
        eps = [ep for group in by_seed for ep in group]
        seed_means = per_seed["returns"].mean(axis=-1)
        success, success_seeds = None, None
        if task.success is not None:
            hits = np.array([task.success(float(ep.rewards.sum()), ep.terminated, ep.obs)
                             for ep in eps], dtype=float).reshape(seeds, -1)
            success, success_seeds = float(hits.mean()), hits.mean(axis=1).tolist()
        irl, irl_seeds = None, None
        if job.score_states is not None:
            like = getattr(job.score_states, "policy_likeness", None)  # a distribution match (ExpertSimilarity)
            if like is not None:
                ends = np.asarray(per_seed["inner_ends"]).reshape(seeds, -1)
                seen = [_as_compared(group, ends[s]) for s, group in enumerate(by_seed)]
                irl = float(like([x for g in seen for x in g[0]], [t for g in seen for t in g[1]]))
                irl_seeds = [float(like(*g)) for g in seen]
            else:
                states = np.concatenate([ep.obs[1:] for ep in eps])
                irl = float(np.mean(np.asarray(job.score_states(states), dtype=np.float64)))
        traj = None
        if job.keep_trajectories:
            src = job.sources[i]
            traj = Trajectories.from_episodes(
                eps, meta={"task": task.name, "policy": "ppo", "steps": info["env_steps"], "seed": job.seed,
                           "reward": "true" if src == TRUE_REWARD else RewardProgram(src).program_id})
        results[i] = PPOResult(
            true_return_mean=float(seed_means.mean()), true_return_std=float(seed_means.std()),
            true_returns=seed_means.tolist(), success_rate=success, success_per_seed=success_seeds,
            irl_score=irl, irl_per_seed=irl_seeds, curve=np.asarray(curve[j]).reshape(seeds, -1).tolist(),
            curve_steps=list(info["curve_steps"]), env_steps=int(info["env_steps"]),
            compile_s=compile_s, run_s=run_s, batch_size=len(branches), trajectories=traj,
            late_fields=late_field_means(eps, seeds, columns))
    jax.clear_caches()
    return results


# -- worker entry points (trusted code run by a jax-profile sandbox worker) ---------------------------
def train_in_worker(ctx: Any, compiled_unused: Any, task: TaskRef, job: PPOJob) -> list[PPOResult]:
    """`fn(ctx, compiled, *args)` for the sandbox pool: the task travels as a TaskRef and
    `job.score_states` must be picklable (arguments cross a spawn boundary)."""
    return train_candidates(task, job)


def check_in_worker(ctx: Any, compiled_unused: Any, task: TaskRef, sources: Sequence[str]) -> list[str | None]:
    """Compile and trace each source for PPO without training: None, or why it cannot run."""
    t = task.resolve()
    env, env_params = _jax_env(t)
    return _branches(t, env, env_params, list(sources))[0]


# -- the host side ------------------------------------------------------------------------------------
def open_pool(task: TaskRef) -> Any:
    """A one-worker jax-profile sandbox pool that can build `task` (its TOML folder importable)."""
    from grace.sandbox.pool import SandboxPool

    return SandboxPool(task.resolve().schema, n_workers=1, profile="jax", pythonpath=list(task.import_paths()))


def _on_pool(task: TaskRef, pool: Any, fn: str, *args: Any, timeout: float) -> Any:
    if pool is not None:
        return pool.call(fn, None, task, *args, timeout=timeout).unwrap()
    with open_pool(task) as own:
        return own.call(fn, None, task, *args, timeout=timeout).unwrap()


def run_ppo(task: Task | TaskRef | str, job: PPOJob, *, timeout: float = 3600.0, pool: Any = None) -> list[PPOResult]:
    """THE PPO worker call: train `job` in a jax-profile sandbox worker (`pool`, or a fresh one
    closed afterwards). One PPOResult per source; raises SandboxError if the worker fails as a
    whole (timeout, memory, crash)."""
    return _on_pool(TaskRef.of(task), pool, WORKER_FN, job, timeout=timeout)


def check_rewards(task: Task | TaskRef | str, sources: Sequence[str], *, timeout: float = 600.0,
                  pool: Any = None) -> list[str | None]:
    """Compile and trace each source for PPO in a jax-profile worker, without training."""
    return _on_pool(TaskRef.of(task), pool, CHECK_FN, list(sources), timeout=timeout)
