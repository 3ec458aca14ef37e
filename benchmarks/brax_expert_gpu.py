"""Train a Brax locomotion expert with brax's PPO at a GPU's batch geometry, within a wall-clock limit.

`grace demos collect --task hopper` trains its expert with `EXPERT_PPO` (grace/tasks/brax_expert.py:
32 envs, sized for a CPU, where 1M env steps take ~50 min; benchmarks/results/locomotion_speed.md).
On a GPU, brax trains thousands of envs at once; this script runs the same trainer
(brax.training.agents.ppo) with `GPU_PPO`'s geometry and writes the policy in the same file format
(`save_policy`: plain arrays + provenance JSON, no pickle) after EVERY evaluation, so a run stopped
by `--seconds` keeps its last policy. Then, on any machine:

    cp OUT/hopper-brax-ppo.npz ~/.cache/grace/experts/   # default_params_path("hopper")
    grace demos collect --task hopper --episodes 8 --out demos/hopper.npz

    python benchmarks/brax_expert_gpu.py --task hopper --steps 50000000 --seconds 420 --out /tmp/expert
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

GPU_PPO: dict[str, Any] = {
    # brax's published large-batch geometry (notebooks/training.ipynb, humanoid: 2048 envs,
    # minibatches 32 of 1024 / 512 steps, short unrolls), with the task's own discount from
    # EXPERT_PPO (0.997, brax's hopper / walker2d configs) and no reward scaling
    "num_envs": 2048, "batch_size": 512, "num_minibatches": 32, "unroll_length": 20,
    "num_updates_per_batch": 8, "learning_rate": 3e-4, "entropy_cost": 1e-3, "reward_scaling": 1.0,
    "normalize_observations": True, "clipping_epsilon": 0.2, "gae_lambda": 0.95,
}


class _Deadline(Exception):
    """Raised from brax's callback once the wall-clock limit is reached (the policy is saved first)."""


def _jax_shims(jax: Any) -> None:
    """brax 0.14.2's PPO calls jax.device_put_replicated / _sharded, which jax 0.11 removed (the GPU
    machine's jax): on one process they are a stack along a new leading device axis."""
    import jax.numpy as jnp

    for name, fn in (("device_put_replicated", lambda x, devices: jax.tree.map(
                          lambda a: jnp.stack([jnp.asarray(a)] * len(devices)), x)),
                     ("device_put_sharded", lambda shards, devices: jax.tree.map(
                          lambda *a: jnp.stack([jnp.asarray(v) for v in a]), *shards))):
        try:
            getattr(jax, name)
        except AttributeError:
            setattr(jax, name, fn)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", default="hopper")
    ap.add_argument("--steps", type=int, default=50_000_000)
    ap.add_argument("--seconds", type=float, default=420.0, help="stop after the first evaluation past this")
    ap.add_argument("--evals", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--cpu-settings", action="store_true", help="EXPERT_PPO's CPU geometry (a smoke test)")
    args = ap.parse_args()

    import brax
    import jax
    from brax import envs
    from brax.training.agents.ppo import train as ppo

    from grace.tasks.brax_expert import EPISODE_LENGTH, EVAL_EPISODES, EXPERT_PPO, save_policy

    _jax_shims(jax)
    settings = dict(EXPERT_PPO[args.task]) | ({} if args.cpu_settings else GPU_PPO)
    out = args.out / f"{args.task}-brax-ppo.npz"
    curve: list[tuple[int, float]] = []
    sps: list[float] = []
    start = time.perf_counter()
    prov: dict[str, Any] = {"task": args.task, "trainer": "brax.training.agents.ppo", "brax": brax.__version__,
                            "jax": jax.__version__, "device": str(jax.devices()[0]), "seed": args.seed,
                            "settings": settings, "env_steps_asked": args.steps,
                            "made_by": "benchmarks/brax_expert_gpu.py"}

    last: list[Any] = []

    def save() -> None:
        prov.update({"eval_curve": curve, "final_eval_return": curve[-1][1] if curve else None,
                     "train_seconds": round(time.perf_counter() - start, 1),
                     "training_sps": [round(x, 1) for x in sps]})
        save_policy(out, last[-1], prov)

    def on_params(step: int, make_policy: Any, params: Any) -> None:  # brax: before each evaluation
        last[:] = [(params[0], params[1])]
        prov["env_steps"] = int(step)
        save()

    def on_eval(step: int, metrics: dict[str, Any]) -> None:
        ret = float(metrics.get("eval/episode_reward", float("nan")))
        curve.append((int(step), ret))
        if "training/sps" in metrics:
            sps.append(float(metrics["training/sps"]))
        seconds = time.perf_counter() - start
        print(f"[expert] {seconds:7.1f} s  step {step:>11,}  eval return {ret:9.1f}  "
              f"sps {sps[-1] if sps else float('nan'):,.0f}", flush=True)
        if last:
            save()  # the policy with its evaluation
        if seconds > args.seconds and step < args.steps and last:
            raise _Deadline

    env = envs.get_environment(args.task)
    try:
        ppo.train(environment=env, num_timesteps=args.steps, episode_length=EPISODE_LENGTH, seed=args.seed,
                  num_evals=args.evals, num_eval_envs=EVAL_EPISODES, deterministic_eval=True,
                  progress_fn=on_eval, policy_params_fn=on_params, **settings)
        prov["stopped"] = "finished"
    except _Deadline:
        prov["stopped"] = f"wall-clock limit ({args.seconds:.0f} s)"
    if last:
        save()
    print(json.dumps({k: prov.get(k) for k in ("env_steps", "final_eval_return", "train_seconds", "stopped")}))
    print(f"[expert] policy: {out}")


if __name__ == "__main__":
    main()
