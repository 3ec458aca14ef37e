"""Env steps/s of the BabyAI JAX twin, vmapped, per level (grace.tasks.babyai.jax_levels).

Two numbers per level and batch size: `step` = gymnax's `env.step` (what rejax's PPO calls: a
step plus an auto-reset, and gymnax computes the reset layout on every step and selects it where
the episode ended) and `step_env` = the transition and observation alone. Random actions, one
`lax.scan` of `--steps` steps inside one jit; compile time is reported apart. For scale, the
minigrid (numpy) level's own steps/s, one env, random actions. Writes
benchmarks/results/babyai_jax_speed.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from grace.tasks.babyai.jax_levels import LEVELS, make_jax_level

ROOT = Path(__file__).resolve().parents[1]


def jax_rate(level: str, n_envs: int, steps: int, auto_reset: bool) -> tuple[float, float]:
    """(env steps/s, compile seconds) of `n_envs` vmapped envs for `steps` steps."""
    env, params = make_jax_level(level)

    def run(key: jax.Array) -> jax.Array:
        k0, key = jax.random.split(key)
        _, state = jax.vmap(env.reset_env, in_axes=(0, None))(jax.random.split(k0, n_envs), params)

        def body(carry: tuple, _: None) -> tuple:
            state, key = carry
            key, ka, ks = jax.random.split(key, 3)
            acts = jax.random.randint(ka, (n_envs,), 0, 7)
            fn = env.step if auto_reset else env.step_env
            _, state, r, done, _ = jax.vmap(fn, in_axes=(0, 0, 0, None))(jax.random.split(ks, n_envs), state, acts, params)
            return (state, key), r.sum() + done.sum()

        return jax.lax.scan(body, (state, key), None, steps)[1].sum()

    t0 = time.perf_counter()
    fn = jax.jit(run).lower(jax.random.PRNGKey(0)).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(fn(jax.random.PRNGKey(1)))  # warm
    t0 = time.perf_counter()
    jax.block_until_ready(fn(jax.random.PRNGKey(2)))
    return n_envs * steps / (time.perf_counter() - t0), compile_s


def minigrid_rate(level: str, steps: int) -> float | None:
    try:
        import gymnasium as gym
        import minigrid  # noqa: F401 - registers the BabyAI levels
    except ImportError:
        return None
    env = gym.make(level)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    for _ in range(steps):
        _, _, term, trunc, _ = env.step(int(rng.integers(7)))
        if term or trunc:
            env.reset()
    return steps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--envs", type=int, nargs="+", default=[256, 1024])
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--levels", nargs="+", default=list(LEVELS))
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/babyai_jax_speed.md"))
    args = ap.parse_args()
    unknown = [lv for lv in args.levels if lv not in LEVELS]
    if unknown:
        raise SystemExit(f"unknown level(s) {unknown}; known: {', '.join(LEVELS)}")
    rows = []
    for level in args.levels:
        for n in args.envs:
            full, c_full = jax_rate(level, n, args.steps, auto_reset=True)
            bare, c_bare = jax_rate(level, n, args.steps, auto_reset=False)
            rows.append((level, n, full, bare, c_full, c_bare))
            print(f"{level} envs={n}: step {full:,.0f}/s, step_env {bare:,.0f}/s", flush=True)
    mg = {level: minigrid_rate(level, 2000) for level in args.levels}
    device = jax.devices()[0]
    lines = [
        "# BabyAI JAX twin: env steps/s (vmapped)", "",
        f"`python benchmarks/babyai_jax_speed.py --envs {' '.join(map(str, args.envs))} --steps {args.steps}`"
        f" on {device.platform} ({device.device_kind}), {os.cpu_count()} CPUs, {platform.processor() or platform.machine()},"
        f" load average at the end {os.getloadavg()[0]:.1f} (the machine is shared: treat CPU rates as lower bounds).", "",
        "`step`: gymnax's `env.step` as PPO calls it (transition + auto-reset; the reset layout is computed on"
        " every step). `step_env`: transition + observation only. Random actions; one jit of a"
        f" {args.steps}-step `lax.scan`; compile seconds apart.", "",
        "Levels that redraw their layout until every object is reachable (GoToRedBall, GoToLocal, PickupLoc: minigrid's `check_objs_reachable`, ~15% of layouts rejected) run that loop inside every vmapped auto-reset until all lanes accept (~4 rounds at 1024 envs): their `step` is 10-60x slower than `step_env`. Timings on this shared 2-core machine vary ~2-3x between runs.", "",
        "| level | envs | step (steps/s) | step_env (steps/s) | compile s (step / step_env) | minigrid, 1 env (steps/s) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for level, n, full, bare, c_full, c_bare in rows:
        m = mg[level]
        lines.append(f"| {level} | {n} | {full:,.0f} | {bare:,.0f} | {c_full:.1f} / {c_bare:.1f} | "
                     f"{'n/a' if m is None else f'{m:,.0f}'} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
