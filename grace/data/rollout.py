"""Rollouts on a task's numpy env: expert demos, random-policy negatives, any policy."""

from __future__ import annotations

import numpy as np

from grace.data.trajectories import DemoError, Episode, Trajectories
from grace.tasks import Task


def rollout(task: Task, policy, episodes: int, seed: int = 0, env=None) -> Trajectories:
    """Run `policy(obs, rng)` for `episodes` episodes on the task's numpy env. A policy with a
    `start_episode(env)` method (a planner on the env's full state, e.g. the BabyAI bot) is
    handed the env after each reset."""
    if env is None:
        factory = task.demo_env or task.make_env
        if factory is None:
            raise DemoError(f"task {task.name!r} has no numpy env to collect from")
        env = factory()
    rng = np.random.default_rng(seed)
    start = getattr(policy, "start_episode", None)
    out = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 100_003 + ep)
        if start is not None:
            start(env)
        ob_list, act_list, rew_list = [np.asarray(obs, np.float32)], [], []
        terminated = truncated = False
        for _ in range(task.max_steps):
            act = policy(obs, rng)
            obs, rew, terminated, truncated, _ = env.step(act)
            ob_list.append(np.asarray(obs, np.float32))
            act_list.append(act)
            rew_list.append(rew)
            if terminated or truncated:
                break
        truncated = truncated or not terminated
        out.append(Episode(
            obs=np.stack(ob_list), actions=np.asarray(act_list).reshape(len(act_list), -1).squeeze(-1)
            if task.action.kind == "discrete" else np.asarray(act_list, np.float32).reshape(len(act_list), -1),
            rewards=np.asarray(rew_list, np.float32), terminated=terminated, truncated=truncated,
        ))
    env.close()
    return Trajectories.from_episodes(out)


def random_policy(task: Task):
    if task.action.kind == "discrete":
        return lambda o, rng: int(rng.integers(task.action.n))
    shape = (task.action.dim,)
    return lambda o, rng: rng.uniform(task.action.low, task.action.high, shape).astype(np.float32)


def collect_expert(task: Task, episodes: int, seed: int = 0) -> Trajectories:
    if task.expert is None:
        raise DemoError(f"task {task.name!r} has no expert ({task.expert_doc or 'none defined'})")
    policy = task.expert()
    traj = rollout(task, policy, episodes, seed)
    rets = traj.returns()
    traj.meta.update({
        "task": task.name, "expert": task.expert_doc or "scripted", "episodes": episodes, "seed": seed,
        "mean_return": float(np.mean(rets)), "std_return": float(np.std(rets)),
        "made_by": f"grace demos collect --task {task.name} --episodes {episodes} --seed {seed}",
    })
    if getattr(policy, "provenance", None):  # a trained expert: how it was trained
        traj.meta["expert_training"] = policy.provenance
    return traj


def random_negatives(task: Task, episodes: int, seed: int = 0) -> Trajectories:
    """Uniform-random-policy rollouts on the task's numpy env (GRACE's first D-)."""
    traj = rollout(task, random_policy(task), episodes, seed)
    traj.meta.update({"task": task.name, "source": "random", "episodes": episodes, "seed": seed})
    return traj
