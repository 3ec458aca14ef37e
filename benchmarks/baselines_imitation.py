"""GAIL / AIRL (imitation 1.0.1) and true-reward PPO (SB3) baselines for benchmarks/quality.py and babyai.py.

Runs INSIDE the separate benchmark venv `benchmarks/.venv-imitation` (imitation pins gymnasium
0.29, which the main environment cannot use). It never imports grace: it reads the committed demo
.npz files directly (keys obs, actions, lengths, terminated, truncated, rewards; or imitation's own
obs, acts, indices, terminal, rews, as benchmarks/sb3_experts.py writes them), converts them to
imitation `TrajectoryWithRew`s and builds the envs itself; the fixed-horizon wrappers below are
copies of grace/tasks/fixed_horizon.py (no early termination; CartPole reward 1 while the original
termination test does not hold else 0; MountainCar / Acrobot 0 at the goal else -1).

    benchmarks/.venv-imitation/bin/python benchmarks/baselines_imitation.py \
        --task pendulum --algo gail --steps 200000 --seeds 3 --out /tmp/gail.json

Writes one JSON: raw true returns per seed (mean over `--eval-episodes` deterministic episodes of
the trained policy on the true env), success per seed, wall time, env steps. quality.py
normalises them with its own R_expert / R_random.

BabyAI levels (`--task BabyAI-GoToRedBall-v0`, ...; needs minigrid in the venv): the env is grace's
own (benchmarks/imitation_babyai.py, which imports grace from the repository root), emitting the
155-wide vector the committed demos hold; before training, the demos' actions are replayed from
their reset seeds and every observation must match (else exit 2). The generator uses grace's
BabyAI PPO settings, and evaluation samples the policy (as grace's PPO evaluation does: a
deterministic grid policy loops forever in front of an obstacle).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

if "float_" not in np.__dict__:  # gymnasium 0.29's Acrobot uses np.float_, gone in NumPy 2
    np.float_ = np.float64  # type: ignore[attr-defined]

ENVS = {
    # task: (gymnasium id, max steps, fixed horizon (reward when terminated, otherwise))
    "cartpole": ("CartPole-v1", 500, None),
    "cartpole_fixed": ("CartPole-v1", 500, (0.0, 1.0)),
    "mountaincar": ("MountainCar-v0", 200, None),
    "mountaincar_fixed": ("MountainCar-v0", 200, (0.0, -1.0)),
    "acrobot": ("Acrobot-v1", 500, None),
    "acrobot_fixed": ("Acrobot-v1", 500, (0.0, -1.0)),
    "pendulum": ("Pendulum-v1", 200, None),
}


class NoTermination(gym.Wrapper):
    """Never terminate; reward = `on_terminal` if the original termination test holds, else `otherwise`."""

    def __init__(self, env: gym.Env, on_terminal: float, otherwise: float) -> None:
        super().__init__(env)
        self.on_terminal = on_terminal
        self.otherwise = otherwise

    def step(self, action):  # type: ignore[override]
        inner = self.env.unwrapped
        if hasattr(inner, "steps_beyond_terminated"):
            inner.steps_beyond_terminated = None
        obs, _, terminated, truncated, info = self.env.step(action)
        info = dict(info, inner_terminated=bool(terminated))
        reward = self.on_terminal if terminated else self.otherwise
        return obs, float(reward), False, truncated, info


def is_babyai(task: str) -> bool:
    return task.startswith("BabyAI-")


def make_env(task: str) -> gym.Env:
    if is_babyai(task):
        from imitation_babyai import BabyAIGym

        return BabyAIGym(task)
    env_id, max_steps, fixed = ENVS[task]
    env = gym.make(env_id, max_episode_steps=max_steps, disable_env_checker=True)
    return NoTermination(env, *fixed) if fixed else env


# Success as grace's task definitions (grace/tasks/builtin.py) compute it from one episode.
def success(task: str, ret: float, terminated: bool, obs: np.ndarray) -> bool:
    if is_babyai(task):
        from imitation_babyai import succeeded

        return succeeded(ret, terminated, obs)
    if task.startswith("cartpole"):
        return ret >= 475
    if task.startswith("mountaincar"):
        return bool(terminated or np.max(obs[:, 0]) >= 0.5)
    if task.startswith("acrobot"):
        tip = -obs[:, 0] - (obs[:, 0] * obs[:, 2] - obs[:, 1] * obs[:, 3])
        return bool(terminated or np.max(tip) > 1.0)
    if task == "pendulum":
        tail = obs[-len(obs) // 4:]
        return bool(np.mean(tail[:, 0] > 0.9) > 0.9)
    raise ValueError(task)


def load_demos(path: str, n_episodes: int | None):
    from imitation.data.types import TrajectoryWithRew

    d = np.load(path, allow_pickle=False)
    if "indices" in d:  # imitation's own npz layout (obs, acts, indices, terminal, rews): sb3_experts.py
        acts_all, rews_all, terminated = d["acts"], d["rews"], d["terminal"]
        lengths = np.diff(np.concatenate([[0], d["indices"], [len(acts_all)]])).astype(int)
    else:  # grace's layout (the committed demos)
        acts_all, rews_all, terminated = d["actions"], d["rewards"], d["terminated"]
        lengths = d["lengths"].astype(int)
    trajs, o, a = [], 0, 0
    for i, length in enumerate(lengths):
        obs = d["obs"][o:o + length + 1].astype(np.float32)
        acts = acts_all[a:a + length]
        trajs.append(TrajectoryWithRew(obs=obs, acts=acts, infos=None, terminal=bool(terminated[i]),
                                       rews=rews_all[a:a + length].astype(np.float32)))
        o += length + 1
        a += length
    return trajs[:n_episodes] if n_episodes else trajs


def ppo_kwargs(task: str) -> tuple[int, dict]:
    """(n_envs, SB3 PPO kwargs): rl-zoo-like settings, the same for PPO, GAIL's and AIRL's generator."""
    if is_babyai(task):
        from imitation_babyai import ppo_kwargs as babyai_kwargs

        return babyai_kwargs()
    if task == "pendulum":
        return 4, dict(n_steps=1024, batch_size=256, gamma=0.9, gae_lambda=0.95, ent_coef=0.0,
                       learning_rate=1e-3, clip_range=0.2, n_epochs=10, use_sde=True, sde_sample_freq=4)
    # MountainCar too: its task's PPO (RL Zoo's, grace/tasks/builtin.py) less the observation normalisation
    # that a discriminator beside raw demo states rules out trains GAIL to -200 on all 5 seeds
    # (quality19/mountaincar/gail-zoo.json) where these reach the flag (0.85 normalised)
    return 8, dict(n_steps=256, batch_size=256, gamma=0.99, gae_lambda=0.95, ent_coef=0.0,
                   learning_rate=3e-4, n_epochs=10)


def evaluate(task: str, policy, episodes: int, seed: int) -> tuple[float, float]:
    env = make_env(task)
    rets, hits = [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=10_000 + seed * 1000 + ep)
        obs_list, ret, terminated, truncated = [obs], 0.0, False, False
        while not (terminated or truncated):
            act, _ = policy.predict(obs, deterministic=not is_babyai(task))
            obs, r, terminated, truncated, _ = env.step(act)
            obs_list.append(obs)
            ret += float(r)
        rets.append(ret)
        hits.append(success(task, ret, terminated, np.asarray(obs_list)))
    env.close()
    return float(np.mean(rets)), float(np.mean(hits))


def run_one(task: str, algo: str, demos: str, steps: int, seed: int, n_demos: int | None,
            eval_episodes: int) -> dict:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import DummyVecEnv

    n_envs, kw = ppo_kwargs(task)
    venv = DummyVecEnv([lambda: make_env(task)] * n_envs)
    venv.seed(seed)
    learner = PPO("MlpPolicy", venv, seed=seed, verbose=0, device="cpu", **kw)
    t0 = time.time()
    if algo == "ppo":
        learner.learn(total_timesteps=steps)
    else:
        from imitation.algorithms.adversarial.airl import AIRL
        from imitation.algorithms.adversarial.gail import GAIL
        from imitation.rewards.reward_nets import BasicRewardNet, BasicShapedRewardNet
        from imitation.util import logger as imit_logger
        from imitation.util.networks import RunningNorm

        trajs = load_demos(demos, n_demos)
        n_trans = sum(len(t.acts) for t in trajs)
        demo_batch = int(min(1024, n_trans))
        net_cls = BasicRewardNet if algo == "gail" else BasicShapedRewardNet
        reward_net = net_cls(venv.observation_space, venv.action_space, normalize_input_layer=RunningNorm)
        cls = GAIL if algo == "gail" else AIRL
        with tempfile.TemporaryDirectory() as tmp:
            trainer = cls(demonstrations=trajs, demo_batch_size=demo_batch,
                          gen_replay_buffer_capacity=2 * n_envs * kw["n_steps"],
                          n_disc_updates_per_round=8 if algo == "gail" else 16, venv=venv,
                          gen_algo=learner, reward_net=reward_net,
                          custom_logger=imit_logger.configure(tmp, ["csv"]), allow_variable_horizon=True)
            # BabyAI: whole rounds of n_envs * n_steps, rounded up as grace's PPO rounds its iterations
            round_steps = n_envs * kw["n_steps"]
            trainer.train(-(-steps // round_steps) * round_steps if is_babyai(task) else steps)
    train_s = time.time() - t0
    ret, succ = evaluate(task, learner, eval_episodes, seed)
    return {"seed": seed, "true_return": ret, "success": succ, "train_s": train_s,
            "env_steps": int(learner.num_timesteps)}


def babyai_problem(task: str, demos: str, algo: str) -> str | None:
    """Why a BabyAI run cannot start (unknown level, no minigrid, demos that do not replay), or None."""
    try:
        from imitation_babyai import LEVELS, replay_mismatch
    except ImportError as exc:
        return f"BabyAI needs minigrid in this venv (make benchmarks/.venv-imitation/.installed): {exc}"
    if task not in LEVELS:
        return f"unknown BabyAI level {task!r}; choose from {', '.join(LEVELS)}"
    if algo == "ppo":
        return None
    try:
        mismatch = replay_mismatch(task, demos)
    except (OSError, ValueError) as exc:  # grace's DemoError is a ValueError
        return f"cannot read demos {demos}: {exc}"
    return None if mismatch is None else f"{demos} does not replay on {task}'s env: {mismatch}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--task", required=True, help=f"{', '.join(sorted(ENVS))} or a BabyAI level (BabyAI-*-v0)")
    ap.add_argument("--algo", required=True, choices=["gail", "airl", "ppo"])
    ap.add_argument("--demos", default="", help="demo .npz (default demos/<task>.npz)")
    ap.add_argument("--n-demos", type=int, default=0, help="first N demo episodes (0 = all)")
    ap.add_argument("--steps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--eval-episodes", type=int, default=8)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    demos = args.demos or str(Path(__file__).resolve().parent.parent / "demos" / f"{args.task}.npz")
    if is_babyai(args.task):
        if problem := babyai_problem(args.task, demos, args.algo):
            print(problem, file=sys.stderr)
            sys.exit(2)
    elif args.task not in ENVS:
        print(f"unknown task {args.task!r}; choose from {', '.join(sorted(ENVS))} or a BabyAI level", file=sys.stderr)
        sys.exit(2)
    out = Path(args.out)
    res = json.loads(out.read_text()) if out.exists() else {"runs": []}
    done = {r["seed"] for r in res["runs"]}
    res.update(task=args.task, algo=args.algo, steps=args.steps, n_demos=args.n_demos or None,
               demos=demos, imitation="1.0.1",
               policy=f"SB3 PPO MlpPolicy, {'sampled' if is_babyai(args.task) else 'deterministic'} eval")
    for seed in range(args.seeds):
        if seed in done:
            continue
        r = run_one(args.task, args.algo, demos, args.steps, seed, args.n_demos or None, args.eval_episodes)
        res["runs"].append(r)
        out.write_text(json.dumps(res, indent=1))  # after every seed: a timeout loses nothing
        print(json.dumps(r), flush=True)
    rets = [r["true_return"] for r in res["runs"]]
    succ = [r["success"] for r in res["runs"]]
    res.update(true_return_mean=float(np.mean(rets)), true_return_std=float(np.std(rets)),
               success_mean=float(np.mean(succ)), success_std=float(np.std(succ)))
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
