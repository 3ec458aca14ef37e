"""One traced program that trains PPO (rejax) on many candidate rewards at once.

The candidate rewards of a generation become the branches of one `jax.lax.switch`; the branch
index lives in the env params, so `jax.vmap` over (candidate index x seed) gives one XLA compile
for the whole batch. Each branch maps `(s, a, s_next, r_env, terminated)` of one transition
(unbatched: the env is vmapped by rejax) to what PPO is paid, as (reward, shaping), with the lump
of the program's terminal value as the branch's `terminal` attribute: reward + lump on termination
+ shaping is `grace.fitness.returns.applied_reward`, and `reward_transform` applies per step to the
reward and the lump (`seen_terminal`), never to the shaping;
`r_env` lets the true reward join the batch as a branch too (the baseline of `grace train`).

Scoring never uses the candidate reward: the trained policy is rolled out on the task's own env
(the true, or fixed-horizon, reward) by `rollout`, which records whole episodes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from grace.config import PPOConfig
from grace.fitness.returns import absorbing_reward, terminal_value

Branch = Callable[[jax.Array, jax.Array, jax.Array, jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
"""branch(s, a, s_next, r_env, terminated) -> (reward, shaping), float32 scalars for one transition:
the program's reward (less its terminal value's shift, `grace.fitness.returns.payment`) and its
potential-based shaping term (0 without a potential); `terminated`: the transition ends its episode
by termination (not by the time limit). A program's branch carries its terminal value's lump as a
`terminal` attribute, which `CandidateRewardEnv` pays on termination."""

REWARD_TRANSFORMS = ("none", "symlog")
"""Per-step transform of the candidate reward seen by PPO (`algo_kwargs["reward_transform"]`). It
applies to each step's reward, and to the lump paid on termination as the steps it stands for
(`seen_terminal`), never to the shaping term, which is added after it: F = gamma * Phi(s') - Phi(s) leaves the optimal
policy of whatever reward PPO sees unchanged only when it is added untransformed (symlog of a shaped
reward wiped out PPO on the fixed-horizon Acrobot: benchmarks/results/transform.md)."""


def seen_terminal(terminal: float, transform: str, gamma: float | None) -> float:
    """The lump PPO is paid on termination under `transform`. A lump stands for an absorbing state
    that pays `r_abs = terminal * (1 - gamma) / gamma` per step forever
    (`grace.fitness.returns.terminal_value`), so a per-step transform applies to those steps, not to
    their sum: under symlog the terminating transition pays `gamma * symlog(r_abs) / (1 - gamma)`.
    symlog of the sum paid terminating Acrobot's goal symlog(1 + 99) = 4.6, while a policy that
    stayed above the winner's threshold without crossing the line was paid symlog(1) = 0.69 per
    step forever (69), and one PPO seed of five never crossed (quality12.md). `gamma`: PPO's
    discount, the one the terminal value was fitted with (`fit.gamma` follows it)."""
    if transform == "none" or not terminal:
        return float(terminal)
    if gamma is None or not 0.0 < gamma < 1.0:
        raise ValueError(f"a {transform} reward transform needs PPO's discount in (0, 1) to pay a terminal value; got {gamma}")
    return terminal_value(float(symlog(absorbing_reward(terminal, gamma), np)), gamma)


def symlog(x: Any, xp: Any = jnp) -> Any:
    """sign(x) * log(1 + |x|): PPO's `symlog` reward transform (`xp`: jax.numpy in the env, numpy for
    a float)."""
    return xp.sign(x) * xp.log1p(xp.abs(x))


REWARD_CLIP = 1e6
"""Candidate rewards are clipped to +-REWARD_CLIP and NaN becomes 0 (one bad lane stays local)."""

PPO_DEFAULTS: dict[str, dict[str, Any]] = {
    "discrete": PPOConfig().discrete.algo_kwargs(),
    "continuous": PPOConfig().continuous.algo_kwargs(),
}
"""rejax PPO settings per action kind: the defaults of the `[ppo.discrete]` / `[ppo.continuous]`
config sections (a run sends its own as `algo_kwargs`, which override these)."""


@struct.dataclass
class CandState:
    inner: Any
    obs: jax.Array


@struct.dataclass
class CandParams:
    inner: Any
    cand: jax.Array

    @property
    def max_steps_in_episode(self) -> Any:
        return self.inner.max_steps_in_episode


def terminated(done: jax.Array, inner: Any, params: Any) -> jax.Array:
    """`done` by termination, not by the time limit: Brax's `info["truncation"]`, else gymnax's
    `state.time` against `max_steps_in_episode` (an env with neither never truncates)."""
    done = jnp.reshape(done, ()).astype(bool)
    info = getattr(inner, "info", None)
    if isinstance(info, dict) and "truncation" in info:
        return jnp.logical_and(done, jnp.reshape(info["truncation"], ()) < 0.5)
    if hasattr(inner, "time") and hasattr(params, "max_steps_in_episode"):
        return jnp.logical_and(done, inner.time < params.max_steps_in_episode)
    return done


def _finite(x: jax.Array) -> jax.Array:
    return jnp.clip(jnp.nan_to_num(jnp.reshape(x, ()).astype(jnp.float32)), -REWARD_CLIP, REWARD_CLIP)


class CandidateRewardEnv(environment.Environment):
    """Wraps a gymnax env; the reward is branch `params.cand` evaluated on (s, a, s_next, r,
    terminated): its reward through the transform, its lump (a branch's `terminal` attribute, 0
    without) on a terminating transition as the transform sees it (`seen_terminal`; `gamma`: PPO's
    discount), plus its shaping."""

    def __init__(self, env: Any, branches: Sequence[Branch], transform: str = "none",
                 gamma: float | None = None) -> None:
        super().__init__()
        if not branches:
            raise ValueError("no reward branches")
        if transform not in REWARD_TRANSFORMS:
            raise ValueError(f"unknown reward_transform {transform!r}; use one of {REWARD_TRANSFORMS}")
        self.env = env
        self.branches = tuple(branches)
        self.transform = transform
        self.terminals = jnp.asarray([seen_terminal(float(getattr(b, "terminal", 0.0)), transform, gamma)
                                      for b in self.branches], jnp.float32)

    @property
    def default_params(self) -> CandParams:
        return CandParams(self.env.default_params, jnp.int32(0))

    def step_env(self, key: jax.Array, state: CandState, action: Any, params: CandParams):  # noqa: D102
        obs, inner, r_env, done, info = self.env.step_env(key, state.inner, action, params.inner)
        r_env = jnp.reshape(r_env, ()).astype(jnp.float32)
        term = terminated(done, inner, params.inner)
        if len(self.branches) == 1:
            r, f = self.branches[0](state.obs, action, obs, r_env, term)
        else:
            r, f = jax.lax.switch(params.cand, self.branches, state.obs, action, obs, r_env, term)
        r, f = _finite(r), _finite(f)
        if self.transform == "symlog":
            r = symlog(r)
        r = r + jnp.where(term, self.terminals[params.cand], 0.0)
        return obs, CandState(inner, obs), jnp.clip(r + f, -REWARD_CLIP, REWARD_CLIP), done, info

    def reset_env(self, key: jax.Array, params: CandParams):  # noqa: D102
        obs, inner = self.env.reset_env(key, params.inner)
        return obs, CandState(inner, obs)

    def action_space(self, params: Any = None) -> Any:  # noqa: D102
        return self.env.action_space(None if params is None else params.inner)

    def observation_space(self, params: CandParams) -> Any:  # noqa: D102
        return self.env.observation_space(params.inner)

    @property
    def num_actions(self) -> int:  # noqa: D102
        return self.env.num_actions


def action_spec(env: Any, params: Any) -> jax.ShapeDtypeStruct:
    """Abstract action of one transition (what a branch receives as `a`)."""
    space = env.action_space(params)
    if isinstance(space, spaces.Discrete):
        return jax.ShapeDtypeStruct((), jnp.int32)
    return jax.ShapeDtypeStruct(tuple(space.shape), jnp.float32)


def check_branch(branch: Branch, obs_dim: int, act: jax.ShapeDtypeStruct) -> str | None:
    """Trace one branch abstractly (`jax.eval_shape`); None if its reward and shaping are float
    scalars, else why."""
    obs = jax.ShapeDtypeStruct((obs_dim,), jnp.float32)
    r_env = jax.ShapeDtypeStruct((), jnp.float32)
    term = jax.ShapeDtypeStruct((), jnp.bool_)
    try:
        out = jax.eval_shape(branch, obs, act, obs, r_env, term)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is the candidate's
        return f"does not trace under JAX: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
    if not isinstance(out, tuple) or len(out) != 2:
        return f"a PPO branch must give (reward, shaping); got {type(out).__name__}"
    for what, part in zip(("reward", "shaping"), out, strict=True):
        if not hasattr(part, "shape") or part.shape != ():
            return f"{what} of one transition must be a scalar; got shape {getattr(part, 'shape', part)}"
        if not jnp.issubdtype(part.dtype, jnp.floating):
            return f"{what} must be a float; got dtype {part.dtype}"
    return None


def rollout(act: Callable[[jax.Array, jax.Array], jax.Array], env: Any, params: Any, rng: jax.Array,
            n_episodes: int, max_steps: int, discrete: bool) -> dict[str, jax.Array]:
    """Roll `act` out for `n_episodes` fixed-length episodes on `env` (its own reward).

    Returns obs0 (n, obs_dim), obs (n, T, obs_dim) = s_next of each step, actions, rewards
    (0 after the episode ended), alive (n, T) mask, returns (n,), lengths (n,), terminated (n,),
    and inner_ends (n,): on a fixed-horizon env (one whose step reports `info["inner_terminated"]`,
    `grace.tasks.jax_envs`), the number of steps until the wrapped env would first have
    terminated (0: never; always 0 on other envs).
    """
    space = env.action_space(params)

    def single(key: jax.Array) -> tuple[jax.Array, ...]:
        k0, key = jax.random.split(key)
        obs0, st = env.reset_env(k0, params)

        def step(carry: tuple, _: None) -> tuple:
            obs, st, alive, key = carry
            key, ka, ks = jax.random.split(key, 3)
            a = act(obs, ka)
            if not discrete:
                a = jnp.clip(a, space.low, space.high)
            obs2, st2, r, done, info = env.step_env(ks, st, a, params)
            r = jnp.reshape(r, ()).astype(jnp.float32)
            inner = jnp.reshape(info.get("inner_terminated", False), ()).astype(bool)
            out = (obs2, a, r * alive, alive, jnp.logical_and(done, alive), jnp.logical_and(inner, alive))
            return (obs2, st2, jnp.logical_and(alive, jnp.logical_not(done)), key), out

        carry = (obs0, st, jnp.array(True), key)
        _, (obs, acts, rews, alive, dones, inner) = jax.lax.scan(step, carry, None, max_steps)
        return obs0, obs, acts, rews, alive, dones, inner

    obs0, obs, acts, rews, alive, dones, inner = jax.vmap(single)(jax.random.split(rng, n_episodes))
    lengths = alive.sum(-1)
    return {
        "obs0": obs0, "obs": obs, "actions": acts, "rewards": rews, "alive": alive,
        "returns": rews.sum(-1), "lengths": lengths,
        "terminated": jnp.logical_and(dones.any(-1), lengths < max_steps),
        "inner_ends": jnp.where(inner.any(-1), jnp.argmax(inner, axis=-1) + 1, 0),
    }


def ppo_config(discrete: bool, steps: int, algo_kwargs: dict[str, Any] | None,
               n_evals: int) -> dict[str, Any]:
    """rejax PPO config: defaults per action kind, `algo_kwargs` on top, eval cadence set."""
    cfg = {k: (dict(v) if isinstance(v, dict) else v)
           for k, v in PPO_DEFAULTS["discrete" if discrete else "continuous"].items()}
    cfg.update(algo_kwargs or {})
    cfg["total_timesteps"] = int(steps)
    iteration = cfg["num_envs"] * cfg["num_steps"]
    iters = max(1, int(np.ceil(steps / iteration)))
    per_eval = max(1, int(np.ceil(iters / max(1, n_evals))))
    cfg["eval_freq"] = per_eval * iteration
    cfg["skip_initial_evaluation"] = n_evals <= 1
    return cfg


def build_trainer(env: Any, params: Any, branches: Sequence[Branch], discrete: bool, steps: int,
                  max_steps: int, algo_kwargs: dict[str, Any] | None = None, n_evals: int = 1,
                  curve_episodes: int = 8, final_episodes: int = 8,
                  ) -> tuple[Callable[[jax.Array, jax.Array], tuple[Any, Any]], dict[str, Any]]:
    """A jitted `fn(cand_idx (N,), keys (S, 2)) -> (curve (N, S, E), final rollout (N, S, ...))`.

    `curve` is the mean true return of `curve_episodes` episodes at each evaluation point (the
    first at step 0 when `n_evals > 1`); `final` the `rollout` of the trained policy.
    """
    from rejax import PPO

    cfg = ppo_config(discrete, steps, algo_kwargs, n_evals)
    wrapped = CandidateRewardEnv(env, branches, cfg.pop("reward_transform", "none"), cfg.get("gamma"))
    algo = PPO.create(env=wrapped, env_params=CandParams(params, jnp.int32(0)), **cfg)

    def curve_cb(a: Any, ts: Any, rng: jax.Array) -> jax.Array:
        if n_evals <= 1:
            return jnp.zeros((), jnp.float32)
        roll = rollout(a.make_act(ts), env, params, rng, curve_episodes, max_steps, discrete)
        return roll["returns"].mean()

    algo = algo.replace(eval_callback=curve_cb)

    def one(idx: jax.Array, key: jax.Array) -> tuple[Any, Any]:
        a = algo.replace(env_params=algo.env_params.replace(cand=idx))
        k_train, k_eval = jax.random.split(key)
        ts, curve = a.train(k_train)
        final = rollout(a.make_act(ts), env, params, k_eval, final_episodes, max_steps, discrete)
        return curve, final

    fn = jax.jit(jax.vmap(jax.vmap(one, in_axes=(None, 0)), in_axes=(0, None)))
    iteration = cfg["num_envs"] * cfg["num_steps"]
    num_evals = int(np.ceil(cfg["total_timesteps"] / cfg["eval_freq"]))
    per_eval = cfg["eval_freq"] // iteration
    info = {
        "config": {k: v for k, v in cfg.items() if k != "agent_kwargs"},
        "env_steps": int(num_evals * per_eval * iteration),
        "curve_steps": ([0] if not cfg["skip_initial_evaluation"] else [])
        + [int((i + 1) * per_eval * iteration) for i in range(num_evals)],
    }
    return fn, info


def run_batch(fn: Callable[[jax.Array, jax.Array], tuple[Any, Any]], n: int, seeds: int,
              seed: int) -> tuple[Any, Any, float, float]:
    """Compile (ahead of time) and run `fn`; returns (curve, final, compile_s, run_s) on host."""
    idx = jnp.arange(n, dtype=jnp.int32)
    keys = jax.random.split(jax.random.PRNGKey(seed), seeds)
    t0 = time.perf_counter()
    compiled = fn.lower(idx, keys).compile()  # type: ignore[attr-defined]
    t1 = time.perf_counter()
    curve, final = compiled(idx, keys)
    curve, final = jax.device_get((curve, final))
    t2 = time.perf_counter()
    return curve, final, t1 - t0, t2 - t1
