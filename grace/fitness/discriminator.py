"""A candidate-independent discriminator for IRL-mode PPO fitness, fixed per round.

`ExpertSimilarity` is fit once per round from the positive (expert or goal) states of the offline
dataset, never from the candidate being scored, so PPO fitness cannot be gamed by the candidate's
own reward scale. In feature space standardised by the positives' spread (d dimensions):

- per state (`__call__`): how close it lies to the nearest positive, exp(-min_i ||x - e_i||^2 / d):
  what the active rounds use to cut a policy's rollouts into expert-like and not;
- per policy (`likeness`): how closely the *distribution* of the states it visits matches the
  positives', 2 K(P, E) / (K(P, P) + K(E, E)) with the Gaussian kernel exp(-||x - y||^2 / d) and
  K the mean kernel value between two sets (1 when the mean embeddings coincide; 1 - likeness is
  the squared MMD relative to the two sets' self-similarity). Being near *some* expert state is
  not enough: a Pendulum policy that swings through the expert's swing-up states for the whole
  episode scored 0.84 on the nearest-state mean (the expert-like true-reward policy 0.95) and
  0.59 here (0.95); it is how expert-like PPO in the loop, PPO fitness and the rounds measure.
- per policy, with how its episodes end (`policy_likeness`): the likeness times the match of the
  share of episodes that terminate, 1 - |policy's share - the experts' share|, when the
  discriminator knows the experts' share (`ending_rate`; from_data(..., endings=True)). On a
  fixed-horizon env an episode ends where the wrapped env would have terminated
  (`grace.fitness.ppo._as_compared`), as the demos' did in the terminating env. States alone cannot see that an episode never ends: on
  BabyAI GoToRedBall a reward that paid for wandering near the ball trained policies that never
  reached it (success 0.02) yet scored 0.33, above the held-out bot's own 0.29, and PPO in the loop
  chose it over a reward whose policies succeeded 0.78 of the time (benchmarks/results/babyai2/).
  Termination is the env's, never the candidate's reward, so the score stays candidate-independent.
- and how long its episodes run (`length_match`; with the experts' share): the ratio of the mean
  episode lengths, min / max, policy vs expert (`expert_lengths`). The state distribution is
  normalised over the episode, so it cannot see how soon a goal is reached: on terminating
  MountainCar every shaped candidate's policy scored 0.95-0.98 while they reached the flag in 124 to
  177 steps (the experts: 121), and PPO in the loop chose one of 150 steps (0.66 of the expert's
  normalised return vs GAIL's 0.85; benchmarks/results/quality13.md). A keep-alive policy that
  falls sooner is further from the experts' full episodes the same way.
- the references on goal tasks (`whole_episodes`; from_data(..., whole_episodes=True)): every state
  of the whole expert episodes, not only the goal transitions that are the dataset's positives. A
  policy's episode, like the expert's, runs from the start to the goal: its states are compared
  with the expert's occupancy, as GAIL matches it. The goal transitions alone ranked terminating
  Acrobot's policies poorly (true-reward PPO 0.14, a sparse reward's slower policy 0.15; Spearman
  with the true return 0.70) and scored 0 for every MountainCar policy, the one that reached the
  flag on some episodes included; every expert state: 0.98, 0.98, 0.98, 0.64 for a policy three
  times slower, 0 for one that never ended (Spearman 1.00), and 0.06 for that MountainCar policy.
- over the experts' horizon (`horizons`; from_data(..., horizon=True): when the demos come from
  another env than PPO's, a terminating one whose fixed-horizon variant PPO trains on): the
  references are every state of the expert episodes, and a policy's state at step t weighs the
  share of expert episodes still running at t. What the expert does after its episode ended is
  unknown, so the policy is compared over the steps the expert was seen. On fixed-horizon Acrobot
  the goal states alone scored true-reward PPO's policy 0.15 and sparse rewards' slower ones
  0.20-0.23 (Spearman with the true return 0.05); over the horizon 0.99, the dense tip height
  0.99, the sparse rewards 0.93-0.99 and a policy left hanging 0.66 (Spearman 0.97;
  benchmarks/results/horizon_likeness.md). PPO in the loop then chose the dense tip height and the
  row went from 0.78 to 1.01 of true-reward PPO (quality7.md). Every expert state without the
  weights ranks them no better than the goal states (Spearman -0.87 there). The horizon alone
  cannot see the goal: on fixed-horizon MountainCar every candidate's policy scored 0.755-0.782,
  those that reached the flag and those left in the valley (quality15.md), so the episodes are
  also cut where the wrapped env terminates and their endings and lengths compared.

`ExpertSimilarity.for_task` picks among these by the task: what PPO in the loop, the shaping check,
the rounds and PPO fitness all use.

Plain numpy; picklable, so it crosses into a sandbox worker.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from grace.types import whole_episode_rows


class ExpertSimilarity:
    def __init__(self, positives: np.ndarray, max_ref: int = 2000, seed: int = 0,
                 ending_rate: float | None = None, horizons: Sequence[int] | None = None,
                 whole_episodes: bool = False, lengths: Sequence[int] | None = None) -> None:
        pos = np.asarray(positives, dtype=np.float64)
        if len(pos) == 0:
            raise ValueError("ExpertSimilarity needs at least one positive state")
        rng = np.random.default_rng(seed)
        if len(pos) > max_ref:
            pos = pos[rng.choice(len(pos), size=max_ref, replace=False)]
        self.mean = pos.mean(axis=0)
        spread = pos.std(axis=0)
        self.scale = np.where(spread > 1e-6, spread, 1.0)
        self.ref = ((pos - self.mean) / self.scale).astype(np.float32)
        self._kee: float | None = None  # K(E, E): fixed by the positives, computed once on first use
        self.ending_rate = ending_rate
        """The share of expert episodes that terminate (None: episode endings are not compared)."""
        self.mean_length = None if lengths is None or len(lengths) == 0 else float(np.mean(lengths))
        """The experts' mean episode length in steps (None: episode lengths are not compared)."""
        self.whole_episodes = whole_episodes or horizons is not None
        """The references are every state of the expert episodes, not the positives alone."""
        self.survival = None if horizons is None else _survival(horizons)
        """survival[t]: the share of expert episodes longer than t steps (None: a policy's states all
        weigh the same)."""

    @classmethod
    def from_data(cls, data: dict[str, np.ndarray], seed: int = 0, max_ref: int = 2000,
                  endings: bool = False, whole_episodes: bool = False, horizon: bool = False) -> ExpertSimilarity:
        """From the train positives of the offline dataset (`max_ref`: the run's fitness.disc_max_ref);
        `endings`: also the share of its expert episodes that terminate (`expert_ending_rate`) and
        their lengths (`expert_horizons`);
        `whole_episodes`: every state of its whole train expert episodes instead; `horizon`: those,
        compared over the episodes' lengths."""
        whole = whole_episodes or horizon
        mask = reference_rows(data, whole) & data["train"].astype(bool)
        rate = expert_ending_rate(data) if endings else None
        lengths = expert_horizons(data) if horizon or endings else None
        return cls(data["s_next"][mask], max_ref=max_ref, seed=seed, ending_rate=rate,
                   horizons=lengths if horizon else None, whole_episodes=whole,
                   lengths=lengths if endings else None)

    @classmethod
    def for_task(cls, data: dict[str, np.ndarray], *, goal: bool, same_env: bool, seed: int = 0,
                 max_ref: int = 2000) -> ExpertSimilarity:
        """The discriminator grace compares a task's policies with (module docstring): episode endings
        and lengths counted, the experts' horizon too when the demos come from another env than the
        one PPO trains on (`same_env`: `task.demo_env` unset; PPO's is then the demos' env's
        fixed-horizon variant, whose episodes end where the wrapped env would have terminated,
        `grace.fitness.ppo._as_compared`); every expert state on `goal` tasks (`task.kind`), the
        positives (every expert state too) on keep-alive ones."""
        return cls.from_data(data, seed=seed, max_ref=max_ref, endings=True, whole_episodes=goal,
                             horizon=not same_env)

    def describe(self) -> str:
        """What a policy's states are compared with, in words (PPO in the loop's record, `grace show`)."""
        refs = ("every expert state over the experts' horizon" if self.survival is not None
                else "every expert state" if self.whole_episodes else "the positive (expert or goal) states")
        return (refs + (", and the share of episodes that end" if self.ending_rate is not None else "")
                + (" and how long they run" if self.mean_length is not None else ""))

    def ending_match(self, terminated: Sequence[bool]) -> float:
        """1 - |share of `terminated` episodes - the experts' share|; 1 without an expert share or
        episodes (nothing to compare)."""
        flags = np.asarray(terminated, dtype=bool)
        if self.ending_rate is None or flags.size == 0:
            return 1.0
        return float(1.0 - abs(flags.mean() - self.ending_rate))

    def length_match(self, lengths: Sequence[int]) -> float:
        """min / max of the mean of `lengths` (a policy's episodes, in steps) and the experts' mean;
        1 without an expert mean or episodes (nothing to compare)."""
        steps = np.asarray(lengths, dtype=np.float64)
        if self.mean_length is None or steps.size == 0:
            return 1.0
        mean = float(steps.mean())
        return min(mean, self.mean_length) / max(mean, self.mean_length, 1e-12)

    def policy_likeness(self, episodes: Sequence[np.ndarray], terminated: Sequence[bool]) -> float:
        """`likeness` of the states a policy visited (`episodes`: each one's states in step order),
        weighed over the experts' horizon when it is known, times the `ending_match` and the
        `length_match` of its episodes."""
        eps = [np.asarray(e) for e in episodes]
        if not eps:
            return float("nan")
        states = np.concatenate(eps)
        weights = None
        if self.survival is not None:
            surv = np.append(self.survival, 0.0)  # no expert episode runs past the longest
            weights = np.concatenate([surv[np.minimum(np.arange(len(e)), len(surv) - 1)] for e in eps])
        return (self.likeness(states, weights=weights) * self.ending_match(terminated)
                * self.length_match([len(e) for e in eps]))

    def _standardise(self, states: np.ndarray) -> np.ndarray:
        return ((np.asarray(states, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)

    def likeness(self, states: np.ndarray, max_states: int = 2000, seed: int = 0,
                 weights: np.ndarray | None = None) -> float:
        """How closely the distribution of `states` (a policy's visits; `weights`: how much each
        counts, none negative) matches the positives' (module docstring); in [0, 1]. At most
        `max_states` of them (a seeded subsample of those with weight) are used."""
        x = self._standardise(states)
        w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
        keep = np.flatnonzero(w > 0)
        if len(keep) == 0:
            return float("nan")
        if len(keep) > max_states:
            keep = np.sort(np.random.default_rng(seed).choice(keep, size=max_states, replace=False))
        x, w = x[keep], w[keep] / w[keep].sum()
        d = x.shape[1]
        if self._kee is None:
            self._kee = _mean_kernel(self.ref, self.ref, d)
        kpe, kpp = _mean_kernel(x, self.ref, d, w), _mean_kernel(x, x, d, w, w)
        return float(2.0 * kpe / (kpp + self._kee))

    def heldout_likeness(self, data: dict[str, np.ndarray]) -> float | None:
        """The likeness of the held-out reference states of the offline dataset (None when none is
        held out): the expert's own score, the scale a policy's is read against."""
        held = reference_rows(data, self.whole_episodes) & ~data["train"].astype(bool)
        return self.likeness(data["s_next"][held]) if held.any() else None

    def reference_likeness(self, data: dict[str, np.ndarray]) -> float:
        """`heldout_likeness`, or the train reference states' own when none is held out."""
        held = self.heldout_likeness(data)
        return held if held is not None else self.likeness(data["s_next"][reference_rows(data, self.whole_episodes)])

    def __call__(self, states: np.ndarray) -> np.ndarray:
        x = self._standardise(states)
        best = np.full(len(x), np.inf, dtype=np.float32)
        for start in range(0, len(self.ref), 512):  # chunked to bound memory
            ref = self.ref[start : start + 512]
            d2 = (x * x).sum(1)[:, None] - 2.0 * x @ ref.T + (ref * ref).sum(1)[None, :]
            best = np.minimum(best, d2.min(axis=1))
        return np.exp(-np.maximum(best, 0.0) / x.shape[1])


def expert_ending_rate(data: dict[str, np.ndarray]) -> float | None:
    """The share of the dataset's train expert episodes that terminate (any row flagged terminal);
    partial episodes (the probe's segments) do not count. None without such episodes."""
    mask = data["label"].astype(bool) & data["train"].astype(bool) & whole_episode_rows(data)
    episodes = np.asarray(data["episode"])[mask]
    if episodes.size == 0:
        return None
    ids, inv = np.unique(episodes, return_inverse=True)
    ended = np.bincount(inv, weights=np.asarray(data["terminal"], dtype=np.float64)[mask], minlength=len(ids)) > 0
    return float(ended.mean())


def reference_rows(data: dict[str, np.ndarray], whole_episodes: bool) -> np.ndarray:
    """The rows whose states the discriminator compares against: the positives, or
    (`whole_episodes`) every row of the whole expert episodes."""
    if not whole_episodes:
        return data["label"].astype(bool)
    return (np.asarray(data["source"]) == 0) & whole_episode_rows(data)  # source 0: EXPERT (Transitions)


def expert_horizons(data: dict[str, np.ndarray]) -> np.ndarray | None:
    """The lengths in steps of the dataset's whole train expert episodes (the last step index + 1,
    so a subsampled episode keeps its length); None without such episodes."""
    mask = reference_rows(data, True) & data["train"].astype(bool)
    episodes, steps = np.asarray(data["episode"])[mask], np.asarray(data["step"])[mask]
    if episodes.size == 0:
        return None
    ids, inv = np.unique(episodes, return_inverse=True)
    last = np.zeros(len(ids), np.int64)
    np.maximum.at(last, inv, steps)
    return last + 1


def _survival(horizons: Sequence[int]) -> np.ndarray:
    """survival[t] = the share of `horizons` greater than t, for t below the longest."""
    h = np.asarray(horizons, dtype=np.int64)
    if h.size == 0 or h.min() <= 0:
        raise ValueError("expert horizons must be positive episode lengths")
    return (h[None, :] > np.arange(h.max())[:, None]).mean(axis=1)


def _mean_kernel(a: np.ndarray, b: np.ndarray, d: int, wa: np.ndarray | None = None,
                 wb: np.ndarray | None = None) -> float:
    """Mean of exp(-||a_i - b_j||^2 / d) over all pairs, weighted by `wa`/`wb` (each summing to 1;
    None: uniform); chunked to bound memory."""
    total, bb = 0.0, (b * b).sum(1)[None, :]
    for start in range(0, len(a), 512):
        x = a[start : start + 512]
        k = np.exp(-np.maximum((x * x).sum(1)[:, None] - 2.0 * x @ b.T + bb, 0.0) / d).astype(np.float64)
        rows = k.sum(axis=1) / len(b) if wb is None else k @ wb
        total += float(rows.sum() / len(a) if wa is None else rows @ wa[start : start + 512])
    return total

