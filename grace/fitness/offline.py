"""GRACE offline fitness: scoring and counterexamples, inside a sandbox worker.

`evaluate` runs inside a worker with a compiled reward on the labelled dataset
(`grace.data.dataset`), fits its PARAMS on the train split (`grace.fitness.params`), and
returns fitness, metrics and the worst-scored examples for the proposer. The objective itself (calibrated AIRL discriminator, why pi is a
constant, invariance to r -> c*r + d) is documented in `grace.fitness.metrics`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from grace.config import FitSettings
from grace.fitness.batched import CompiledReward, call_reward, check_finite
from grace.fitness.metrics import calibrate, metrics
from grace.fitness.params import fit_params as _fit
from grace.fitness.params import round_param
from grace.fitness.params_batched import fit_candidates
from grace.fitness.returns import (
    DEFAULT_GAMMA,
    Grouping,
    fit_terminal,
    potential_metrics,
    return_ranking,
    shaping_term,
)
from grace.program import FITTED_KEYS, FLOOR_KEY, TERMINAL_KEY, RewardProgram
from grace.search.executor import Executor
from grace.tasks import ObsSchema
from grace.types import EvalResult, Example, Transitions, whole_episode_rows


# -- evaluation ------------------------------------------------------------------------------------
def _state(row: np.ndarray, schema: ObsSchema | None) -> dict[str, Any]:
    if schema is None:
        return {"raw": [float(x) for x in row]}
    return schema.state_dict(row)


def _value(v: np.ndarray) -> float | list[float]:
    return float(v) if np.ndim(v) == 0 else [float(x) for x in np.ravel(v)]


def worst_examples(
    r: np.ndarray,
    data: Transitions,
    components: dict[str, np.ndarray],
    n_worst: int = 8,
    schema: ObsSchema | None = None,
) -> list[Example]:
    """The most misclassified train rows: positives with the lowest r, negatives with the
    highest r (half each, the other class filling in when one runs short), worst first."""
    y, train = data["label"].astype(bool), data["train"].astype(bool)
    pos = np.flatnonzero(train & y)
    neg = np.flatnonzero(train & ~y)
    pos = pos[np.argsort(r[pos], kind="stable")]
    neg = neg[np.argsort(-r[neg], kind="stable")]
    k_pos = min(len(pos), max(n_worst // 2, n_worst - len(neg)))
    k_neg = min(len(neg), n_worst - k_pos)
    names = data["source_names"]
    return [Example(
        label="expert" if y[i] else "negative", source=str(names[int(data["source"][i])]),
        reward=float(r[i]), state=_state(data["s_next"][i], schema),
        components={k: _value(v[i]) for k, v in components.items()},
        episode=int(data["episode"][i]), step=int(data["step"][i]),
    ) for i in [*pos[:k_pos], *neg[:k_neg]]]


def evaluate(
    compiled: CompiledReward,
    data: Transitions,
    params: dict[str, float],
    fit: FitSettings | None = None,
    schema: ObsSchema | None = None,
    seed: int = 0,
) -> EvalResult:
    """Fit PARAMS (when `fit.params`), score the reward on all data, and collect `fit.n_worst`
    counterexamples. `fit` is the run's `[fit]` section (defaults when None).

    `compiled(s_raw, a, s_next_raw, params)` returns the total (B,) or (total, components).
    Exceptions from the reward propagate; non-finite rewards raise ValueError with the count.
    Returns an EvalResult: train and held-out fitness, metrics (`grace.fitness.metrics.metrics`),
    fitted params, worst examples, calibration and the number of reward calls.
    """
    fit = fit or FitSettings()
    params = {k: float(v) for k, v in (params or {}).items()}
    given = {k: params.pop(k) for k in FITTED_KEYS if k in params}  # learned after the rest (or kept)
    shaping_only = {k: params.pop(k) for k in getattr(compiled, "potential_params", ()) if k in params}
    n_evals = 0
    fitted = dict(params)
    train, y = data["train"].astype(bool), data["label"].astype(bool)
    expert = data["source"] == 0
    groups = _Groupings(data, expert, fit.gamma or DEFAULT_GAMMA)
    picks = fit.params and bool(params) and fit.batched and fit.final_candidates > 1  # _pick guards the initial PARAMS
    if picks:
        found, n_evals = fit_candidates(compiled, data, params, seed, fit, fit.final_candidates)
        fitted, n_more = _pick(compiled, data, found, fit, given, shaping_only, expert, groups)
        n_evals += n_more
    elif fit.params and params:
        fitted, n_evals = _fit(compiled, data, params, seed, fit)
    r, comps = call_reward(compiled, data, fitted, fit.chunk)
    n_evals += 1
    if fitted != params and not picks:
        # the subsample may mislead: keep the initial values if train got worse
        # (fit_params only moves constants for a real gain, or to the middle of a plateau)
        r0, comps0 = call_reward(compiled, data, params, fit.chunk)
        n_evals += 1
        if np.all(np.isfinite(r0)) and not (
            np.all(np.isfinite(r))
            and calibrate(r[train], y[train])["fitness"] >= calibrate(r0[train], y[train])["fitness"] - fit.improve_tol
        ):
            fitted, r, comps = dict(params), r0, comps0
    check_finite(r)
    cal = calibrate(r[train], y[train])
    m = metrics(r, y, data["episode"], train, expert=expert, calibrated=cal)
    fitted = fitted | shaping_only
    phi = potentials(compiled, data, fitted, fit.chunk)
    fitted, fit_train, fit_held = _whole_episodes(r, data, expert, fitted, m, fit, given, phi, groups=groups)
    return EvalResult(
        fitness=fit_train, heldout_fitness=fit_held, metrics=m, params=fitted,
        worst=tuple(worst_examples(r, data, comps, fit.n_worst, schema)),
        calibration={k: cal[k] for k in ("alpha", "beta", "centre", "scale")}, n_evals=n_evals,
    )


def _pick(compiled: CompiledReward, data: Transitions, cands: list[tuple[dict[str, float], float]],
          fit: FitSettings, given: dict[str, float], shaping_only: dict[str, float], expert: np.ndarray,
          groups: _Groupings | None = None) -> tuple[dict[str, float], int]:
    """The candidate PARAMS (with their fitness on the search's subsample, the initial PARAMS
    last) whose fitness times the return ranking of whole train episodes, under its own terminal
    value, is best; the first within `fit.improve_tol` of the best wins, so the search's answer
    is kept over an equal runner-up and the initial PARAMS only win outright. A candidate whose
    reward is non-finite on the data is out; when all are, the search's answer is returned (and
    `evaluate` reports its failure). Returns (params, reward calls)."""
    scores = []
    rows = {"train": data["train"].astype(bool), "heldout": np.zeros(len(data["train"]), bool)}
    for cand, disc in cands:
        try:
            r, _ = call_reward(compiled, data, cand, fit.chunk)
        except Exception:  # noqa: BLE001 - the program fails at these PARAMS (the sandbox's own check)
            r = np.full(1, np.nan)
        if not np.all(np.isfinite(r)):
            scores.append(-np.inf)
            continue
        m = {"fitness_train": disc, "fitness_heldout": np.nan}
        phi = potentials(compiled, data, cand | shaping_only, fit.chunk)
        scores.append(_whole_episodes(r, data, expert, dict(cand), m, fit, given, phi, splits=rows, groups=groups)[1])
    best = max(scores)
    if best == -np.inf:
        return cands[0][0], len(cands)
    return cands[next(i for i, v in enumerate(scores) if v >= best - fit.improve_tol)][0], len(cands)


def potentials(compiled: CompiledReward, data: Transitions, params: dict[str, float], chunk: int
               ) -> tuple[np.ndarray, np.ndarray] | None:
    """(Phi(s), Phi(s_next)) of every row when the program has a potential, else None."""
    if not getattr(compiled, "has_potential", False):
        return None
    out = []
    for key in ("s", "s_next"):
        x = data[key]
        parts = [compiled.potential(x[lo : lo + chunk], dict(params)) for lo in range(0, len(x), chunk)]  # type: ignore[attr-defined]
        out.append(np.concatenate(parts) if parts else np.zeros(0))
    check_finite(out[0])
    check_finite(out[1])
    return out[0], out[1]


class _Groupings:
    """The episode `Grouping` of each set of rows ranked, made once per evaluation: every
    candidate PARAMS of `_pick` is ranked on the same train rows."""

    def __init__(self, data: Transitions, expert: np.ndarray, gamma: float) -> None:
        self.data, self.expert, self.gamma = data, expert, gamma
        self.made: dict[bytes, Grouping] = {}

    def __call__(self, rows: np.ndarray) -> Grouping:
        key = np.packbits(rows).tobytes() + len(rows).to_bytes(8, "little")
        if key not in self.made:
            self.made[key] = Grouping(self.data["episode"][rows], self.data["step"][rows], self.expert[rows], self.gamma,
                                      self.data["terminal"][rows])
        return self.made[key]


def _whole_episodes(r: np.ndarray, data: Transitions, expert: np.ndarray, params: dict[str, float],
                    m: dict[str, float], fit: FitSettings, given: dict[str, float],
                    phi: tuple[np.ndarray, np.ndarray] | None = None,
                    splits: dict[str, np.ndarray] | None = None,
                    groups: _Groupings | None = None) -> tuple[dict[str, float], float, float]:
    """Learn the terminal value and its floor on the train split (`fit.terminal`; else keep the
    `given` ones), rank episode returns as they are paid, the potential's shaping included, on
    both splits (into `m`, with the potential's own metrics), and combine: (params, train fitness, held-out fitness).
    `groups`: the evaluation's episode groupings (made here when None). See grace.fitness.returns."""
    gamma = fit.gamma or DEFAULT_GAMMA
    groups = groups or _Groupings(data, expert, gamma)
    whole = whole_episode_rows(data)  # partial episodes are not ranked (grace.types.PARTIAL_PREFIX)
    train = data["train"].astype(bool) & whole
    cols = (data["episode"], data["step"], data["terminal"], expert)
    shaping = None if phi is None else shaping_term(phi[0], phi[1], data["terminal"], gamma)
    paying = dict(given)
    if fit.terminal:
        term = fit_terminal(r[train], *(c[train] for c in cols), gamma,
                            None if shaping is None else shaping[train], groups(train))
        paying = {} if term is None else {TERMINAL_KEY: term, FLOOR_KEY: float(r[train].min())}
    paying = {k: round_param(v) for k, v in paying.items()}  # what the file will hold
    params = params | paying
    term, floor = paying.get(TERMINAL_KEY, 0.0), paying.get(FLOOR_KEY)
    paid = r if shaping is None else r + shaping
    if splits is None:
        held = ~data["train"].astype(bool) & whole
        held &= ~np.isin(data["episode"], data["episode"][train])  # a split episode (one demo) is not whole there
        splits = {"train": train, "heldout": held}
    out = []
    for name, rows in splits.items():
        rows = rows & whole
        ranks = return_ranking(paid[rows], data["episode"][rows], data["step"][rows], expert[rows], term,
                               gamma, groups(rows), floor)
        if phi is not None:
            ranks |= potential_metrics(phi[1][rows], data["episode"][rows], data["step"][rows], expert[rows])
        m.update({f"{k}_{name}": v for k, v in ranks.items()})
        disc, rank = m[f"fitness_{name}"], ranks["return_ranking"]
        out.append(disc * rank if fit.returns and not math.isnan(rank) else disc)
    m["gamma"] = gamma
    return params, out[0], out[1]


def evaluate_in_worker(
    ctx: Any,
    compiled: CompiledReward,
    data_key: str = "offline",
    params: dict[str, float] | None = None,
    fit: FitSettings | None = None,
    seed: int = 0,
) -> EvalResult:
    """Sandbox-pool entry point (`fn(ctx, compiled, *args, **kwargs)`): reads the shipped data
    from `ctx.data[data_key]` and the observation schema from `ctx.schema`; `fit` is the run's
    `[fit]` section, sent with every call."""
    data = ctx.data[data_key]
    out = evaluate(compiled, data, params or {}, fit=fit, schema=getattr(ctx, "schema", None), seed=seed)
    if getattr(compiled, "has_debug", False):
        out = replace(out, debug_output=debug_output(compiled, data, out.params, out.worst))
    return out


def debug_output(compiled: CompiledReward, data: Transitions, params: dict[str, float],
                 worst: Sequence[Example]) -> str:
    """GRACE's print helper: the program's own `debug()` on its worst-scored examples.

    Goes back to the proposer only, never into the score. Errors are reported as text."""
    keys = {(w.episode, w.step) for w in worst}
    rows = np.flatnonzero([(e, t) in keys for e, t in zip(data["episode"], data["step"], strict=True)])
    if len(rows) == 0:
        rows = np.arange(min(8, len(data["label"])))
    try:
        return str(compiled.debug(data["s"][rows], data["a"][rows], data["s_next"][rows], params))
    except Exception as exc:  # the program's own helper failed: tell the proposer, do not fail
        return f"debug() raised {type(exc).__name__}: {exc}"


# -- the offline Fitness (grace.fitness.base) ---------------------------------------------------------
WORKER_FN = "grace.fitness.offline:evaluate_in_worker"
DATA_KEY = "offline"


class OfflineFitness:
    """GRACE's offline discrimination, scored in the executor's sandbox workers."""

    name = "offline"

    def __init__(self, executor: Executor, fit: FitSettings | None = None, timeout: float | None = None) -> None:
        """`fit`: the run's `[fit]` section (sent with every call); `timeout`: seconds per call
        (None: the executor's default)."""
        self.executor, self.fit, self.timeout = executor, fit or FitSettings(), timeout

    def prepare(self, data: Transitions, return_range: tuple[float, float] | None = None) -> None:
        self.executor.put(DATA_KEY, data)

    async def score(self, program: RewardProgram, seed: int) -> EvalResult:
        out = await self.executor.call(WORKER_FN, program.source, data_key=DATA_KEY, params=program.params,
                                       fit=self.fit, seed=seed, timeout=self.timeout)
        if not out.ok:
            return EvalResult.failed(out.error.kind, str(out.error), out.seconds)
        if not isinstance(out.value, EvalResult):  # only a compromised worker answers otherwise
            return EvalResult.failed("crash", f"malformed worker reply: {type(out.value).__name__}", out.seconds)
        return replace(out.value, seconds=out.seconds)

    def describe(self, fitness: float, heldout: float | None, metrics: dict[str, Any],
                 negatives_version: int) -> str:
        held = heldout if heldout is not None else float("nan")
        return (f"{fitness:.4f} train, {held:.4f} held-out (offline GRACE discrimination, "
                f"negatives v{negatives_version})")

    def close(self) -> None:
        pass
