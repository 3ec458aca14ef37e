"""Find exploits before PPO does (issue "Few demos, no exploits", item 2).

A cheap adversarial probe of a candidate reward on the task's numpy env: the cross-entropy
method (CEM; `PROBE_ITERATIONS` = 1 is random shooting) over open-loop action sequences of
`active.probe_horizon` steps, from start states taken from the demos, maximising the candidate's
discounted return under the reward PPO would be paid (`fitness/applied.py`: total, shaping and
terminal value; `fit.gamma`). The env is trusted numpy code and steps in the host; the reward is
untrusted and is only ever evaluated in the sandbox (the run's executor), once per CEM iteration
on every sampled rollout's transitions together.

Start states: the env is reset and then put in a demo state where it allows it (classic control:
`env.unwrapped.state`, converted from the observation for Pendulum and Acrobot and checked
against the env's own observation); each start is compared with the demo's own continuation of
the same length from the same state. Elsewhere the starts are env resets (seeded) and the
comparison is the demos' first `horizon` steps.

What it returns: the probed rollouts that out-earn the demo from their start ("exploits"), cut
to their off-expert segments (less expert-like than all but `active.off_expert_quantile` of the
held-out expert states under the candidate-independent `ExpertSimilarity`), as Trajectories that
join the next round's negatives. Weight: the dataset builder has no weight column and the
fitness averages each class, so a few hundred probed transitions among thousands of random and
PPO ones would hardly count; their episodes are repeated until they make up `active.probe_share`
of the negative transitions (at most `MAX_REPEAT` copies).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from grace.config import EvolveConfig
from grace.data.trajectories import Episode, Trajectories
from grace.fitness.applied import APPLIED_FN
from grace.fitness.discriminator import ExpertSimilarity
from grace.program import RewardProgram
from grace.search.executor import Executor
from grace.search.off_expert import off_expert_segments
from grace.tasks import Task
from grace.types import Transitions

PROBE_ITERATIONS = 4
"""CEM iterations (the budget is split evenly over them; 1 = random shooting)."""
PROBE_STARTS = 8
"""Start states per probe (spread evenly over the demos' states)."""
ELITE_SHARE = 0.1
"""Share of each start's samples that refit its action distribution (and may become negatives)."""
MAX_REPEAT = 50
"""At most this many copies of each probed episode (the weight, see the module docstring)."""
PROBE_MARGIN = 0.1
"""A probed sequence is an exploit when it out-earns the demo from its start by this share of the
spread (std) of the first iteration's returns there: scale-free, and an expert that is merely not
exactly optimal under the true reward is not "exploited" by a hair."""


class ProbeError(RuntimeError):
    """The probe cannot run (no numpy env) or the candidate failed in the sandbox; one line."""


@dataclass
class Start:
    """A start state: the demo state (or reset) and the demo's own continuation from it."""

    obs: np.ndarray
    demo: Episode
    reset_seed: int
    settable: bool


@dataclass
class ProbeResult:
    negatives: Trajectories | None
    """The exploits' off-expert segments, unweighted (None: nothing found)."""
    info: dict[str, Any]


# -- the env side (trusted, host) ---------------------------------------------------------------
def _obs_to_state(env: Any, obs: np.ndarray) -> np.ndarray | None:
    u, obs = env.unwrapped, np.asarray(obs, np.float64)
    name = type(u).__name__
    if name == "PendulumEnv" and obs.size == 3:
        return np.array([math.atan2(obs[1], obs[0]), obs[2]])
    if name == "AcrobotEnv" and obs.size == 6:
        return np.array([math.atan2(obs[1], obs[0]), math.atan2(obs[3], obs[2]), obs[4], obs[5]])
    state = getattr(u, "state", None)
    return obs.copy() if state is not None and np.size(state) == obs.size else None


def set_state(env: Any, obs: np.ndarray, check: bool = True) -> bool:
    """Put a reset env in the state whose observation is `obs`; False where that is not possible
    (or, with `check`, the env's own observation of the result differs: the conversion does not
    fit this env)."""
    state = _obs_to_state(env, obs)
    if state is None:
        return False
    u = env.unwrapped
    old = u.state
    u.state = np.asarray(state, dtype=getattr(old, "dtype", np.float64)) if isinstance(old, np.ndarray) else state
    get_obs = getattr(u, "_get_obs", None)
    if check and callable(get_obs):
        return bool(np.allclose(np.asarray(get_obs(), np.float64), obs, atol=1e-3))
    return True


def _env_action(a: np.ndarray, task: Task) -> Any:
    if task.action.kind == "discrete":
        return int(a)
    return np.asarray(a, np.float32).reshape(task.action.shape or (task.action.dim,))


def rollout(env: Any, start: Start, actions: np.ndarray, task: Task) -> Episode:
    """Play `actions` open-loop from `start`; stops early when the env ends the episode."""
    if start.settable:  # the reset state is overwritten: no need to reseed
        env.reset()
        set_state(env, start.obs, check=False)
    else:
        obs, _ = env.reset(seed=start.reset_seed)
        start.obs = np.asarray(obs, np.float32)
    ob_list, rews = [np.asarray(start.obs, np.float32)], []
    terminated = False
    n = 0
    for a in actions:
        obs, rew, terminated, truncated, _ = env.step(_env_action(a, task))
        ob_list.append(np.asarray(obs, np.float32))
        rews.append(float(rew))
        n += 1
        if terminated or truncated:
            break
    return Episode(np.stack(ob_list), np.asarray(actions[:n]), np.asarray(rews, np.float32), bool(terminated),
                   not terminated)


def replays(env: Any, ep: Episode, task: Task) -> bool:
    """Can the env be put in a demo state? Set it to the first one, play the demo's first action and
    compare with the demo's next state (a stochastic env or an unknown state layout fails: resets)."""
    env.reset()
    if ep.length == 0 or not set_state(env, ep.obs[0]):
        return False
    obs = env.step(_env_action(ep.actions[0], task))[0]
    return bool(np.allclose(np.asarray(obs, np.float64), ep.obs[1], rtol=1e-3, atol=1e-3))


def starts(env: Any, demos: Trajectories, horizon: int, n: int, seed: int, task: Task) -> list[Start]:
    """Up to `n` start states spread evenly over the demos' states, or env resets where the env's
    state cannot be set (`replays`)."""
    eps = list(demos.episodes())
    env.reset(seed=seed)
    if not replays(env, eps[0], task):
        return [Start(ep.obs[0], _window(ep, 0, horizon), seed * 1_009 + i, False)
                for i, ep in enumerate(eps[i % len(eps)] for i in range(n))]
    # a start leaves `horizon` demo steps after it where the episode is that long, so the probe and
    # the demo are compared over equally many steps
    cands = [(e, t) for e, ep in enumerate(eps) for t in range(max(1, ep.length - horizon + 1))]
    picks = np.unique(np.linspace(0, len(cands) - 1, min(n, len(cands))).astype(int))
    return [Start(eps[cands[i][0]].obs[cands[i][1]], _window(eps[cands[i][0]], cands[i][1], horizon),
                  seed * 1_009 + k, True) for k, i in enumerate(picks)]


def _window(ep: Episode, t: int, horizon: int) -> Episode:
    end = min(ep.length, t + horizon)
    last = end == ep.length and ep.terminated
    return Episode(ep.obs[t : end + 1], ep.actions[t:end], None, last, not last)


# -- the search ---------------------------------------------------------------------------------
class _Sampler:
    """One start's action distribution over `horizon` steps: per-step categorical (discrete) or
    clipped Gaussian (continuous), refit to the elites."""

    def __init__(self, task: Task, horizon: int) -> None:
        self.task, self.h = task, horizon
        act = task.action
        if act.kind == "discrete":
            self.probs = np.full((horizon, act.n), 1.0 / act.n)
        else:
            self.low, self.high = float(act.low), float(act.high)
            self.mean = np.full((horizon, act.dim), (self.low + self.high) / 2)
            self.std = np.full((horizon, act.dim), (self.high - self.low) / 2)

    def sample(self, m: int, rng: np.random.Generator, constants: bool = False) -> np.ndarray:
        """`m` sequences; with `constants` the first ones hold one action throughout (each discrete
        action; all-low and all-high): "do one thing forever" (spin, flail) is a common exploit."""
        if self.task.action.kind == "discrete":
            u = rng.random((m, self.h, 1))
            out = (u > np.cumsum(self.probs, axis=1)[None]).sum(-1).clip(0, self.task.action.n - 1)
            fixed = [np.full(self.h, k) for k in range(self.task.action.n)]
        else:
            x = self.mean[None] + self.std[None] * rng.standard_normal((m, *self.mean.shape))
            out = np.clip(x, self.low, self.high).astype(np.float32)
            fixed = [np.full(self.mean.shape, v, np.float32) for v in (self.low, self.high)]
        if constants:
            for k, seq in enumerate(fixed[: m // 2]):
                out[k] = seq
        return out

    def refit(self, elites: np.ndarray) -> None:
        if self.task.action.kind == "discrete":
            n = self.task.action.n
            freq = np.stack([(elites == k).mean(0) for k in range(n)], axis=-1)
            self.probs = 0.9 * freq + 0.1 / n
        else:
            self.mean = elites.mean(0)
            self.std = np.maximum(elites.std(0), 0.05 * (self.high - self.low))


def _batch(episodes: list[Episode], task: Task) -> dict[str, np.ndarray]:
    tr = Trajectories.from_episodes(episodes).transitions()
    return {"s": tr["s"], "a": task.action.batch(tr["a"]), "s_next": tr["s_next"],
            "terminal": tr["terminal"], "episode": tr["episode"], "step": tr["step"]}


async def _returns(executor: Executor, source: str, params: dict[str, float], episodes: list[Episode],
                   task: Task, gamma: float, timeout: float | None) -> np.ndarray:
    """Discounted return of each episode under the candidate's applied reward: ONE sandbox call."""
    batch = _batch(episodes, task)
    out = await executor.call(APPLIED_FN, source, {k: batch[k] for k in ("s", "a", "s_next", "terminal")},
                              params=params, gamma=gamma, timeout=timeout)
    if not out.ok:
        raise ProbeError(f"the candidate failed in the sandbox while the probe scored its rollouts: {out.error}")
    r = np.asarray(out.value, np.float64)
    if r.shape != (len(batch["s"]),):
        raise ProbeError(f"malformed worker reply: rewards of shape {r.shape} for {len(batch['s'])} transitions")
    return np.bincount(batch["episode"], weights=r * np.power(gamma, batch["step"]), minlength=len(episodes))


async def probe_reward(task: Task, source: str, executor: Executor, demos: Trajectories, disc: ExpertSimilarity,
                       data: Transitions | dict[str, np.ndarray], *, gamma: float, budget: int = 1024,
                       horizon: int = 40, seed: int = 0, quantile: float = 0.05,
                       timeout: float | None = None) -> ProbeResult:
    """Probe `source` (see the module docstring). Never raises for a failing candidate: the
    result then has no negatives and `info["error"]` says why."""
    t0 = time.perf_counter()
    info: dict[str, Any] = {"rollouts": 0, "env_steps": 0, "reward_calls": 0, "exploit_rollouts": 0,
                            "kept_episodes": 0, "kept_transitions": 0, "horizon": horizon, "error": None}
    try:
        found = await _search(task, source, executor, demos, gamma, budget, horizon, seed, timeout, info)
    except ProbeError as exc:
        info |= {"error": str(exc), "seconds": time.perf_counter() - t0}
        return ProbeResult(None, info)
    kept = None
    if found:
        kept, threshold = _off_expert(found, disc, data, quantile)
        info["off_expert_threshold"] = threshold
    if kept is not None:
        info |= {"kept_episodes": kept.n_episodes, "kept_transitions": kept.n_transitions,
                 "kept_expert_likeness_max": float(disc(kept.transitions()["s_next"]).max())}
        kept.meta.update({"source": "probe", "task": task.name, "seed": seed, "horizon": horizon})
    info["seconds"] = time.perf_counter() - t0
    return ProbeResult(kept, info)


def _off_expert(found: list[Episode], disc: ExpertSimilarity, data: Transitions | dict[str, np.ndarray],
                quantile: float) -> tuple[Trajectories | None, float]:
    return off_expert_segments(Trajectories.from_episodes(found), disc, data, quantile, keep_one=False)


async def _search(task: Task, source: str, executor: Executor, demos: Trajectories, gamma: float, budget: int,
                  horizon: int, seed: int, timeout: float | None, info: dict[str, Any]) -> list[Episode]:
    """CEM from every start; the exploits found (rollouts that out-earn the demo from their
    start: up to the elite count per start, best first). Fills `info`."""
    if task.make_env is None:
        raise ProbeError(f"task {task.name!r} has no numpy env to probe on")
    params = RewardProgram(source).params  # parsed, never run, in the host
    env = task.make_env()
    try:
        rng = np.random.default_rng([seed, 7_717])
        todo = starts(env, demos, horizon, PROBE_STARTS, seed, task)
        per = max(2, budget // (PROBE_ITERATIONS * len(todo)))
        n_elite = max(1, math.ceil(ELITE_SHARE * per))
        # as many steps as the demo's continuation, unless the demo terminated (the terminal value
        # then pays for the rest)
        samplers = [_Sampler(task, horizon if st.demo.terminated else st.demo.length) for st in todo]
        demo_ret = await _returns(executor, source, params, [s.demo for s in todo], task, gamma, timeout)
        best: list[list[tuple[float, int, Episode]]] = [[] for _ in todo]
        count, margin, top = 0, np.zeros(len(todo)), np.full(len(todo), -np.inf)
        for it in range(PROBE_ITERATIONS):
            acts = [smp.sample(per, rng, constants=it == 0) for smp in samplers]
            eps = [rollout(env, st, a, task) for st, seqs in zip(todo, acts, strict=True) for a in seqs]
            rets = (await _returns(executor, source, params, eps, task, gamma, timeout)).reshape(len(todo), per)
            info["reward_calls"] += 1
            info["rollouts"] += len(eps)
            info["env_steps"] += sum(e.length for e in eps)
            if it == 0:
                margin = PROBE_MARGIN * rets.std(axis=1) + 1e-9 * np.maximum(1.0, np.abs(demo_ret))
            for i, smp in enumerate(samplers):
                order = np.argsort(-rets[i], kind="stable")[:n_elite]
                smp.refit(acts[i][order])
                for j in order:
                    if rets[i, j] > demo_ret[i] + margin[i]:
                        best[i].append((float(rets[i, j]), count, eps[i * per + j]))
                        count += 1
                best[i] = sorted(best[i], key=lambda x: (-x[0], x[1]))[:n_elite]
            top = np.maximum(top, rets.max(axis=1))
            if info.get("best_return") is None or rets.max() > info["best_return"]:
                i, j = np.unravel_index(int(np.argmax(rets)), rets.shape)
                info |= {"best_return": float(rets[i, j]), "demo_return_at_best": float(demo_ret[i])}
    finally:
        env.close()
    gain = (top - demo_ret) / np.maximum(margin / PROBE_MARGIN, 1e-12)
    info |= {"starts": len(todo), "state_set": todo[0].settable, "demo_return_mean": float(np.mean(demo_ret)),
             "best_gain_std": float(gain.max()),  # the largest gain over the demo, in the start's return spreads
             "starts_beaten": sum(bool(b) for b in best), "exploit_rollouts": sum(len(b) for b in best)}
    info["reward_calls"] += 1
    return [ep for b in best for _, _, ep in b]


# -- the round stage ----------------------------------------------------------------------------
def enabled(cfg: EvolveConfig, task: Task) -> bool:
    """`active.probe` and the task has a numpy env to probe on."""
    return bool(cfg.active.probe and cfg.active.probe_budget > 0 and task.make_env is not None)


def weighted(found: Trajectories, n_negatives: int, share: float) -> tuple[Trajectories, int]:
    """`found` repeated until it makes up `share` of the negative transitions (`n_negatives`:
    the others), at least once, at most MAX_REPEAT times; (the set, copies)."""
    target = share / max(1e-9, 1.0 - share) * n_negatives
    copies = int(min(MAX_REPEAT, max(1, math.ceil(target / max(1, found.n_transitions)))))
    eps = list(found.episodes()) * copies
    return Trajectories.from_episodes(eps, meta=dict(found.meta, copies=copies)), copies


async def probe_round(task: Task, source: str, cfg: EvolveConfig, rnd: int, data: Transitions,
                      demos: Trajectories, executor: Executor) -> tuple[Trajectories | None, dict[str, Any]]:
    """The probe of a round's best reward: (its weighted negatives or None, what it measured)."""
    from grace.fitness.base import fit_settings
    from grace.search.ppo_select import discriminator

    disc = discriminator(cfg, data)
    res = await probe_reward(task, source, executor, demos, disc, data, gamma=fit_settings(cfg, task).gamma,
                             budget=cfg.active.probe_budget, horizon=cfg.active.probe_horizon,
                             seed=cfg.seed + 7_919 * rnd, quantile=cfg.active.off_expert_quantile,
                             timeout=cfg.sandbox.eval_timeout)
    if res.negatives is None:
        return None, res.info
    traj, copies = weighted(res.negatives, int(np.sum(~data["label"].astype(bool))), cfg.active.probe_share)
    return traj, res.info | {"copies": copies}


def summary(info: dict[str, Any]) -> str:
    """One progress line."""
    if info.get("error"):
        return f"probe: {info['error']}"
    best, demo = info.get("best_return"), info.get("demo_return_at_best")
    ret = "" if best is None else f", best return {best:.3f} vs the demo's {demo:.3f} from the same start"
    return (f"probe: {info.get('rollouts', 0)} rollouts in {info.get('seconds', 0.0):.1f}s{ret}; "
            f"{info.get('exploit_rollouts', 0)} out-earn the demos, {info.get('kept_transitions', 0)} "
            f"off-expert transitions become negatives (x{info.get('copies', 1)})")
