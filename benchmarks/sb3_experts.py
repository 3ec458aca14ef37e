"""Expert demos grace did not make: SB3 PPO experts (rl-zoo settings) written in imitation's layout.

Runs INSIDE the benchmark venv `benchmarks/.venv-imitation` (SB3, imitation; never imports grace).
For each task it trains stable-baselines3 PPO on the env's TRUE reward with the rl-zoo
hyperparameters below, rolls out `--episodes` deterministic episodes of the trained policy from
seeded resets, and writes them the way imitation's old `save` did: one .npz with `obs`
(every episode's T+1 observations, concatenated), `acts`, `indices` (episode boundaries in
`acts`), `terminal` and `rews`, plus `<file>.json` beside it saying how the expert was made
(settings, env steps, seed, library versions, the demos' returns). grace reads the .npz as any
user's imitation demos (grace/data/formats.py); GAIL reads the same file (baselines_imitation.py).

    benchmarks/.venv-imitation/bin/python benchmarks/sb3_experts.py --tasks pendulum,cartpole_fixed \
        --out demos/sb3

The demos of a fixed-horizon task (cartpole_fixed) are rolled out on the terminating original env,
as grace's own (demos/README.md), so an expert that balances for all 500 steps is truncated there.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

# task: (gymnasium id of the env the expert trains and acts on, max steps, env steps, n_envs,
#        SB3 PPO kwargs): rl-baselines3-zoo's hyperparams/ppo.yml for CartPole-v1 and Pendulum-v1
#        (CartPole's linear schedules for learning rate and clip range included).
EXPERTS = {
    "cartpole": ("CartPole-v1", 500, 100_000, 8,
                 dict(n_steps=32, batch_size=256, gae_lambda=0.8, gamma=0.98, n_epochs=20, ent_coef=0.0,
                      learning_rate="lin_0.001", clip_range="lin_0.2")),
    "pendulum": ("Pendulum-v1", 200, 100_000, 4,
                 dict(n_steps=1024, gae_lambda=0.95, gamma=0.9, n_epochs=10, ent_coef=0.0,
                      learning_rate=1e-3, clip_range=0.2, use_sde=True, sde_sample_freq=4)),
}
EXPERTS["cartpole_fixed"] = EXPERTS["cartpole"]


def _schedule(value: object) -> object:
    """rl-zoo's "lin_X": X decaying linearly to 0 over training; other values unchanged."""
    if isinstance(value, str) and value.startswith("lin_"):
        start = float(value[4:])
        return lambda progress_remaining: progress_remaining * start
    return value


def train(task: str, seed: int, steps: int | None) -> tuple[object, dict]:
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    env_id, max_steps, default_steps, n_envs, kw = EXPERTS[task]
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs={"max_episode_steps": max_steps})
    model = PPO("MlpPolicy", venv, seed=seed, verbose=0, device="cpu", **{k: _schedule(v) for k, v in kw.items()})
    t0 = time.time()
    model.learn(total_timesteps=steps or default_steps)
    info = {"trainer": "stable-baselines3 PPO (MlpPolicy), rl-baselines3-zoo hyperparameters", "env": env_id,
            "n_envs": n_envs, "ppo": kw, "env_steps": int(model.num_timesteps), "seed": seed,
            "train_s": round(time.time() - t0, 1)}
    return model, info


def rollout(task: str, model: object, episodes: int, seed: int) -> dict[str, np.ndarray]:
    env_id, max_steps = EXPERTS[task][:2]
    env = gym.make(env_id, max_episode_steps=max_steps)
    obs_all, acts, rews, terminal, indices = [], [], [], [], []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed * 1000 + ep)
        obs_all.append(obs)
        done = False
        while not done:
            act, _ = model.predict(obs, deterministic=True)  # type: ignore[attr-defined]
            obs, r, term, trunc, _ = env.step(act)
            obs_all.append(obs)
            acts.append(act)
            rews.append(r)
            done = term or trunc
        terminal.append(bool(term))
        indices.append(len(acts))
    env.close()
    return {"obs": np.asarray(obs_all, np.float32), "acts": np.asarray(acts),
            "indices": np.asarray(indices[:-1], np.int64), "terminal": np.asarray(terminal, bool),
            "rews": np.asarray(rews, np.float32)}


def returns(arrays: dict[str, np.ndarray]) -> list[float]:
    bounds = [0, *arrays["indices"].tolist(), len(arrays["acts"])]
    return [float(arrays["rews"][lo:hi].sum()) for lo, hi in zip(bounds, bounds[1:], strict=False)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", default="pendulum,cartpole_fixed", help=f"comma list of {', '.join(EXPERTS)}")
    ap.add_argument("--episodes", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--steps", type=int, default=0, help="env steps of expert training (0 = rl-zoo's)")
    ap.add_argument("--out", default="demos/sb3", help="folder for TASK.npz and TASK.npz.json")
    args = ap.parse_args()
    tasks = [t for t in args.tasks.split(",") if t]
    if unknown := [t for t in tasks if t not in EXPERTS]:
        print(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(EXPERTS)}", file=sys.stderr)
        sys.exit(2)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    import stable_baselines3

    for task in tasks:
        print(f"[sb3] training the {task} expert", flush=True)
        model, info = train(task, args.seed, args.steps or None)
        arrays = rollout(task, model, args.episodes, args.seed)
        rets = returns(arrays)
        path = out / f"{task}.npz"
        np.savez_compressed(path, **arrays)
        info |= {"task": task, "episodes": args.episodes, "transitions": len(arrays["acts"]),
                 "rollout": "deterministic policy, resets seeded seed * 1000 + episode",
                 "return_mean": float(np.mean(rets)), "return_std": float(np.std(rets)), "returns": rets,
                 "versions": {"stable-baselines3": stable_baselines3.__version__, "torch": torch.__version__,
                              "gymnasium": gym.__version__},
                 "layout": "imitation npz (obs, acts, indices, terminal, rews)",
                 "made_by": f"benchmarks/sb3_experts.py --tasks {task} --episodes {args.episodes} --seed {args.seed}"
                            + (f" --steps {args.steps}" if args.steps else "")}
        Path(f"{path}.json").write_text(json.dumps(info, indent=1) + "\n")
        print(f"[sb3] {path}: {args.episodes} episodes, return {np.mean(rets):.1f} ± {np.std(rets):.1f}", flush=True)


if __name__ == "__main__":
    main()
