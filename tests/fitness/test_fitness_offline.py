"""GRACE offline fitness: objective, metrics, data building, PARAMS fitting, counterexamples."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grace.config import FitSettings
from grace.data.dataset import build_offline_data
from grace.data.trajectories import Episode, Trajectories
from grace.fitness import (
    auc,
    calibrate,
    evaluate,
    evaluate_in_worker,
    fitness,
    metrics,
    trajectory_ranking,
)
from grace.fitness.metrics import best_threshold
from grace.program import FITTED_KEYS
from grace.sandbox.views import view
from grace.tasks import ActionSpace, Field, ObsSchema, Task
from grace.types import EvalResult, Example

SCHEMA = ObsSchema((Field("x"), Field("v", size=2)))


def without_terminal(params: dict[str, float]) -> dict[str, float]:
    """PARAMS without the learned terminal value and its floor (grace/fitness/returns.py): what
    fitting moved."""
    return {k: v for k, v in params.items() if k not in FITTED_KEYS}


def toy_task(kind: str = "goal") -> Task:
    return Task(name="toy", description="toy", schema=SCHEMA, action=ActionSpace("discrete", n=2), kind=kind)


def toy_traj(rng: np.random.Generator, n_eps: int, lo: float, hi: float, terminated: bool | list[bool] = True,
             lengths: tuple[int, int] = (5, 15), goal_x: float | None = None) -> Trajectories:
    """Episodes whose x drifts in [lo, hi]; a terminated episode ends at goal_x if given."""
    eps = []
    flags = terminated if isinstance(terminated, list) else [terminated] * n_eps
    for i in range(n_eps):
        t = int(rng.integers(*lengths))
        obs = rng.uniform(lo, hi, size=(t + 1, 3)).astype(np.float32)
        if flags[i] and goal_x is not None:
            obs[-1, 0] = goal_x
        eps.append(Episode(obs=obs, actions=rng.integers(0, 2, t), rewards=None,
                           terminated=flags[i], truncated=not flags[i]))
    return Trajectories.from_episodes(eps)


# -- the objective ------------------------------------------------------------------------------
@st.composite
def scored_data(draw):
    n = draw(st.integers(6, 60))
    ints = draw(st.lists(st.integers(-40, 40), min_size=n, max_size=n))
    labels = draw(st.lists(st.booleans(), min_size=n, max_size=n))
    if all(labels) or not any(labels):
        labels[0], labels[1] = True, False
    ep_len = draw(st.integers(1, 5))
    r = np.array(ints, np.float64) * 0.25
    y = np.array(labels)
    ep = np.arange(n) // ep_len
    train = (ep % 3) != 2
    expert = np.isin(ep, np.unique(ep[y]))
    return r, y, ep, train, expert


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scored_data(), st.floats(0.01, 100.0), st.floats(-100.0, 100.0))
def test_metrics_invariant_to_positive_affine_maps(data, c, d):
    r, y, ep, train, expert = data
    a = metrics(r, y, ep, train, expert)
    b = metrics(c * r + d, y, ep, train, expert)
    assert a.keys() == b.keys()
    for k in a:
        assert (math.isnan(a[k]) and math.isnan(b[k])) or abs(a[k] - b[k]) < 1e-6, k
    assert abs(fitness(r, y) - fitness(c * r + d, y)) < 1e-6
    assert abs(auc(r, y) - auc(c * r + d, y)) < 1e-12
    assert 0.0 <= fitness(r, y) <= 1.0


@settings(max_examples=40, deadline=None)
@given(scored_data())
def test_fitness_is_bounded_and_reversal_never_wins(data):
    r, y, *_ = data
    f, f_rev = fitness(r, y), fitness(-r, y)
    assert 0.0 <= f <= 1.0 and 0.0 <= f_rev <= 1.0
    # alpha > 0: r and -r cannot both separate; at most one scores above chance
    assert min(f, f_rev) < 1e-9 or auc(r, y) == 0.5 or (f > 0) == (auc(r, y) > 0.5)


def test_perfect_separation_scores_about_one_and_best():
    rng = np.random.default_rng(0)
    y = np.r_[np.ones(40), np.zeros(400)].astype(bool)
    perfect = np.where(y, 1.0, 0.0) + 0.01 * rng.standard_normal(len(y))
    f = fitness(perfect, y)
    assert f > 0.99
    for sigma in (0.3, 1.0, 3.0):
        assert fitness(np.where(y, 1.0, 0.0) + sigma * rng.standard_normal(len(y)), y) < f
    # one huge penalty on a rare negative (e.g. "-1000 when the pole falls") costs nothing
    r = np.where(y, 1.0, 0.0)
    r[-1] = -1e4
    assert fitness(r, y) > 0.99


def test_reversed_reward_scores_zero_not_a_flipped_win():
    rng = np.random.default_rng(1)
    y = np.r_[np.ones(30), np.zeros(300)].astype(bool)
    r = np.where(y, 1.0, 0.0) + 0.1 * rng.standard_normal(len(y))
    assert fitness(r, y) > 0.9
    assert fitness(-r, y) == 0.0
    assert calibrate(-r, y)["alpha"] == 0.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), gap=st.floats(0.0, 4.0), alpha=st.floats(1e-3, 50.0), beta=st.floats(-20.0, 20.0),
       steps=st.booleans())
def test_a_warm_start_finds_the_same_calibration(seed, gap, alpha, beta, steps):
    """`calibrate(..., start=)` (PARAMS fitting passes the previous point's solution) reaches the
    optimum the cold solve reaches, from any start: the objective is concave."""
    rng = np.random.default_rng(seed)
    y = rng.random(300) < 0.3
    r = np.where(y, gap, 0.0) + rng.standard_normal(300)
    if steps:  # step-like rewards: few distinct values
        r = np.round(r)
    if not y.any() or y.all():
        return
    cold, warm = calibrate(r, y), calibrate(r, y, start=(alpha, beta))
    assert warm["fitness"] == pytest.approx(cold["fitness"], abs=1e-9)
    assert warm["alpha"] == pytest.approx(cold["alpha"], rel=1e-6, abs=1e-7)
    assert warm["beta"] == pytest.approx(cold["beta"], rel=1e-6, abs=1e-7)


def test_constant_and_nan_rewards():
    y = np.r_[np.ones(5), np.zeros(20)].astype(bool)
    assert fitness(np.full(len(y), 3.7), y) == 0.0
    assert fitness(np.full(len(y), -1e9), y) == 0.0
    assert fitness(np.full(len(y), np.nan), y) == 0.0
    assert math.isnan(fitness(np.ones(5), np.ones(5, bool)))  # one class only: undefined


def test_more_noise_lowers_fitness_monotonically():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(200), np.zeros(2000)].astype(bool)
    eps = rng.standard_normal(len(y))
    fs = [fitness(y + s * eps, y) for s in (0.05, 0.2, 0.4, 0.8, 1.6, 3.2)]
    assert all(a > b for a, b in zip(fs, fs[1:], strict=False)), fs
    assert fs[0] > 0.99 and fs[-1] < 0.1


def test_accuracy_threshold_and_auc_ties():
    r = np.array([0.0, 1.0, 1.0, 2.0])
    y = np.array([False, False, True, True])
    thr, acc = best_threshold(r, y)
    assert thr == 0.5 and acc == 0.75  # ties with 1.5; the lowest threshold is kept
    assert auc(r, y) == pytest.approx((1 + 1 + 0.5 + 1) / 4)
    assert best_threshold(-r, y)[1] == 0.5  # reversed: best is "everything expert", chance


def test_trajectory_ranking_uses_means_not_lengths():
    # expert episodes are short with high per-step reward; negatives long with low reward:
    # a sum would rank the negatives higher, the mean ranks the experts higher
    r = np.r_[np.full(2, 1.0), np.full(2, 1.0), np.full(50, 0.1), np.full(50, 0.1)]
    ep = np.repeat([0, 1, 2, 3], [2, 2, 50, 50])
    expert = ep < 2
    assert trajectory_ranking(r, ep, expert) == 1.0
    assert trajectory_ranking(-r, ep, expert) == 0.0
    assert trajectory_ranking(np.zeros_like(r), ep, expert) == 0.5


# -- data ---------------------------------------------------------------------------------------
def test_goal_positives_are_final_states_of_terminated_expert_episodes():
    rng = np.random.default_rng(3)
    flags = [True, False, True, True, False, True, True, True]
    demos = toy_traj(rng, 8, -1, 1, terminated=flags, goal_x=5.0)
    rand = toy_traj(rng, 6, -1, 1, terminated=False)
    data = build_offline_data(toy_task("goal"), demos, [("random", rand)], seed=0)
    pos = data["label"] == 1
    assert pos.sum() == sum(flags)
    assert np.all(data["s_next"][pos, 0] == 5.0) and np.all(data["source"][pos] == 0)
    assert set(data["step"][pos]) <= set((demos.lengths - 1).tolist())
    n_exp = int((data["source"] == 0).sum())
    assert n_exp == demos.n_transitions
    assert (data["label"][data["source"] == 1] == 0).all()
    assert data["s"].dtype == np.float32 and data["a"].dtype == np.int64
    assert list(data["source_names"]) == ["expert", "random"]
    # global episode ids: unique across sources
    assert len(np.unique(data["episode"])) == demos.n_episodes + rand.n_episodes


def test_keepalive_and_selector_positives():
    rng = np.random.default_rng(4)
    demos = toy_traj(rng, 4, 0, 1)
    neg = toy_traj(rng, 4, -1, 0, terminated=False)
    data = build_offline_data(toy_task("keepalive"), demos, [("random", neg)])
    assert ((data["label"] == 1) == (data["source"] == 0)).all()
    sel = build_offline_data(toy_task("keepalive"), demos, [("random", neg)],
                             selector=lambda t: t.transitions()["step"] == 0)
    assert (sel["label"] == 1).sum() == 4 and (sel["step"][sel["label"] == 1] == 0).all()
    with pytest.raises(ValueError, match="no positive"):
        build_offline_data(toy_task("goal"), toy_traj(rng, 3, 0, 1, terminated=False), [])


def test_holdout_is_whole_episodes_and_stratified():
    rng = np.random.default_rng(5)
    demos = toy_traj(rng, 8, 0, 1, terminated=[True] * 4 + [False] * 4)
    negs = [("random", toy_traj(rng, 12, -1, 0, terminated=False)),
            ("ppo-r1", toy_traj(rng, 4, -1, 0, terminated=False))]
    data = build_offline_data(toy_task("goal"), demos, negs, holdout=0.25, seed=7)
    for e in np.unique(data["episode"]):
        assert len(np.unique(data["train"][data["episode"] == e])) == 1
    held_eps = {int(e) for e in np.unique(data["episode"][~data["train"]])}
    for code, n_eps in ((0, 8), (1, 12), (2, 4)):
        eps = np.unique(data["episode"][data["source"] == code])
        assert len(eps) == n_eps and len(held_eps & set(eps.tolist())) == round(0.25 * n_eps)
    # held-out has goal states (stratified) and so a held-out fitness
    assert (data["label"][~data["train"]] == 1).any() and (data["label"][data["train"]] == 1).any()
    again = build_offline_data(toy_task("goal"), demos, negs, holdout=0.25, seed=7)
    assert all(np.array_equal(data[k], again[k]) for k in data)
    tiny = build_offline_data(toy_task("keepalive"), toy_traj(rng, 2, 0, 1), negs)
    assert (~tiny["train"][tiny["source"] == 0]).any() and tiny["train"][tiny["source"] == 0].any()


def test_one_keepalive_demo_holds_out_its_last_steps_and_ranks_whole_episodes_only():
    """Few demos, item 4: one demo has no episode to hold out, so its last quarter of steps is;
    held-out return ranking skips the split episode (its tail is not a whole episode)."""
    rng = np.random.default_rng(8)
    demo = toy_traj(rng, 1, 1.0, 2.0, terminated=False, lengths=(40, 41))
    negs = [("random", toy_traj(rng, 12, -1.0, 1.0, terminated=False, lengths=(10, 11)))]
    data = build_offline_data(toy_task("keepalive"), demo, negs, holdout=0.25, seed=0)
    expert = data["source"] == 0
    steps, train = data["step"][expert], data["train"][expert]
    assert (~train).sum() == 10 and steps[~train].min() > steps[train].max()  # the last 10 of 40
    res = evaluate(threshold_reward, data, {"t": 1.0}, fit=FitSettings(params=False))
    assert res.heldout_fitness > 0.9  # held-out positives exist: a held-out fitness
    assert math.isnan(res.metrics["return_ranking_heldout"]) and res.metrics["return_ranking_train"] == 1.0
    goal = build_offline_data(toy_task("goal"), toy_traj(rng, 1, 0, 1, goal_x=3.0), negs, seed=0)
    assert goal["train"][goal["source"] == 0].all()  # a goal demo's one positive stays in train


def test_subsampling_caps_each_class():
    rng = np.random.default_rng(6)
    demos = toy_traj(rng, 6, 0, 1, lengths=(20, 30))
    neg = toy_traj(rng, 10, -1, 0, terminated=False, lengths=(20, 30))
    data = build_offline_data(toy_task("keepalive"), demos, [("random", neg)], max_per_class=50)
    assert (data["label"] == 1).sum() == 50 and (data["label"] == 0).sum() == 50
    assert all(len(v) == 100 for k, v in data.items() if k != "source_names")


# -- evaluate -----------------------------------------------------------------------------------
def threshold_reward(s, a, s_next, p):
    x = view(s_next, SCHEMA).x
    hit = np.where(x > p["t"], 1.0, 0.0)
    return hit, {"hit": hit, "x": x}


def synthetic_data(n_pos: int = 300, n_neg: int = 3000, seed: int = 0) -> dict[str, np.ndarray]:
    """Positives have x in (1, 2), negatives x in (-1, 1): the true boundary is x = 1."""
    rng = np.random.default_rng(seed)
    demos = toy_traj(rng, max(2, n_pos // 10), 1.0, 2.0, lengths=(10, 11))
    neg = toy_traj(rng, max(2, n_neg // 10), -1.0, 1.0, terminated=False, lengths=(10, 11))
    return build_offline_data(toy_task("keepalive"), demos, [("random", neg)], seed=seed)


def test_fitting_moves_a_mis_set_threshold():
    data = synthetic_data()
    start = evaluate(threshold_reward, data, {"t": 0.2}, fit=FitSettings(params=False))
    fitted = evaluate(threshold_reward, data, {"t": 0.2}, fit=FitSettings(n_worst=4), schema=SCHEMA)
    assert fitted.params["t"] != 0.2 and 0.8 < fitted.params["t"] <= 1.05
    assert fitted.fitness > start.fitness + 0.2 and fitted.fitness > 0.9
    assert fitted.heldout_fitness > 0.8
    assert 1 < fitted.n_evals <= 160
    assert all(isinstance(v, float) for v in fitted.metrics.values())
    assert isinstance(fitted, EvalResult) and fitted.ok and len(fitted.worst) == 4
    assert all(isinstance(w, Example) for w in fitted.worst)
    assert set(fitted.calibration) == {"alpha", "beta", "centre", "scale"}
    # already right: nothing improves, the initial value is kept
    right = evaluate(threshold_reward, data, {"t": 1.0}, fit=FitSettings())
    assert without_terminal(right.params) == {"t": 1.0}


def test_fitting_cannot_win_by_rescaling():
    data = synthetic_data(seed=3)

    def scaled_only(s, a, s_next, p):
        return (s_next[:, 0] * p["w"]).astype(np.float32)  # float32: rounding differs per w

    res = evaluate(scaled_only, data, {"w": 0.37}, fit=FitSettings())
    assert without_terminal(res.params) == {"w": 0.37}


def test_cost_weights_never_flip_into_bonuses():
    """`cost_...` PARAMS stay >= 0 under fitting (the contract's rule), where a plain weight flips."""
    data = synthetic_data(seed=5)  # positives have the larger x: charging for x is the wrong sign

    def charge(key):
        def reward(s, a, s_next, p):
            return (0.01 * s_next[:, 1] - p[key] * s_next[:, 0]).astype(np.float32)
        return reward

    plain = evaluate(charge("w_x"), data, {"w_x": 0.5}, fit=FitSettings())
    assert plain.params["w_x"] < 0  # unconstrained, the fitter turns the charge into a bonus
    cost = evaluate(charge("cost_x"), data, {"cost_x": 0.5}, fit=FitSettings())
    assert cost.params["cost_x"] >= 0


def test_worst_examples_are_the_most_misclassified():
    data = synthetic_data(seed=1)
    res = evaluate(threshold_reward, data, {"t": 0.5}, fit=FitSettings(params=False, n_worst=6), schema=SCHEMA)
    worst = res.worst
    assert len(worst) == 6
    exp = [w for w in worst if w["label"] == "expert"]
    neg = [w for w in worst if w["label"] == "negative"]
    assert len(exp) == 3 and len(neg) == 3
    train = data["train"]
    x = data["s_next"][:, 0].astype(np.float64)
    r = np.where(x > 0.5, 1.0, 0.0)
    assert all(w["reward"] == r[train & (data["label"] == 1)].min() for w in exp)
    assert all(w["reward"] == r[train & (data["label"] == 0)].max() == 1.0 for w in neg)
    for w in worst:
        assert set(w["state"]) == {"x", "v"} and len(w["state"]["v"]) == 2
        assert w["source"] in ("expert", "random")
        assert w["components"]["hit"] == w["reward"] and w["components"]["x"] == w["state"]["x"]
    assert all(w["state"]["x"] > 0.5 for w in neg)


def test_worst_ranks_by_reward_value():
    data = synthetic_data(seed=2)

    def linear(s, a, s_next, p):
        return s_next[:, 0] * p["w"]

    res = evaluate(linear, data, {"w": 1.0}, fit=FitSettings(params=False, n_worst=4))
    x = data["s_next"][:, 0]
    tr, y = data["train"], data["label"] == 1
    neg_top = np.sort(x[tr & ~y])[::-1][:2]
    pos_low = np.sort(x[tr & y])[:2]
    got = [w["reward"] for w in res.worst]
    assert np.allclose(got, np.r_[pos_low, neg_top])
    assert "raw" in res.worst[0]["state"]  # no schema: the raw vector


def test_nan_rewards_raise_and_exceptions_propagate():
    data = synthetic_data(n_pos=40, n_neg=200)

    def some_nan(s, a, s_next, p):
        return np.where(s_next[:, 0] > 1.5, np.nan, 0.0)

    n_nan = int((data["s_next"][:, 0] > 1.5).sum())
    with pytest.raises(ValueError, match=f"non-finite on {n_nan} "):
        evaluate(some_nan, data, {}, fit=FitSettings(params=False))

    def broken(s, a, s_next, p):
        raise ZeroDivisionError("boom")

    with pytest.raises(ZeroDivisionError):
        evaluate(broken, data, {"t": 1.0})


def test_evaluate_in_worker_reads_ctx():
    data = synthetic_data(n_pos=40, n_neg=200)
    ctx = SimpleNamespace(data={"offline": data}, schema=SCHEMA)
    res = evaluate_in_worker(ctx, threshold_reward, params={"t": 1.0}, fit=FitSettings(params=False))
    assert res.fitness > 0.95 and without_terminal(res.params) == {"t": 1.0}
    assert set(res.worst[0]["state"]) == {"x", "v"}


def test_scalar_total_is_broadcast_and_scores_zero():
    data = synthetic_data(n_pos=40, n_neg=200)
    res = evaluate(lambda s, a, s2, p: 1.0, data, {}, fit=FitSettings(params=False))
    assert res.fitness == 0.0 and res.metrics["auc_train"] == 0.5


def test_random_negatives_rollout():
    pytest.importorskip("gymnasium")
    from grace.data.rollout import random_negatives
    from grace.tasks import get_task

    task = get_task("mountaincar")
    neg = random_negatives(task, episodes=1, seed=0)
    assert neg.n_episodes == 1 and neg.meta["source"] == "random"
    assert neg.obs.shape[1] == task.obs_dim


def test_fitted_threshold_is_centred_in_the_gap_between_classes():
    """Max margin: with a gap between the classes (negatives x < 0.2, positives x > 0.6), a fitted
    threshold moves to the middle of the gap, not to the edge of the training positives."""
    rng = np.random.default_rng(5)
    demos = toy_traj(rng, 6, 0.6, 2.0, lengths=(10, 11))
    neg = toy_traj(rng, 40, -1.0, 0.2, terminated=False, lengths=(10, 11))
    data = build_offline_data(toy_task("keepalive"), demos, [("random", neg)], seed=5)
    for start in (0.25, 0.55):  # both inside the gap, near either edge
        res = evaluate(threshold_reward, data, {"t": start}, fit=FitSettings())
        assert 0.3 < res.params["t"] < 0.5, (start, res.params)
        assert res.fitness > 0.99


def test_the_terminal_value_is_fitted_with_its_floor_and_kept_when_not_fitted():
    """`evaluate` writes the terminal value with the lowest train reward as its floor (how it is
    paid, grace/fitness/returns.payment); with `fit.terminal` off a program's own pair is kept."""
    from grace.fitness.offline import call_reward
    from grace.program import FLOOR_KEY, TERMINAL_KEY

    data = synthetic_data(seed=3)
    assert data["terminal"].any()
    res = evaluate(threshold_reward, data, {"t": 1.0}, fit=FitSettings(params=False))
    r, _ = call_reward(threshold_reward, data, {"t": 1.0}, FitSettings().chunk)
    train = data["train"].astype(bool)
    assert TERMINAL_KEY in res.params and res.params[FLOOR_KEY] == pytest.approx(float(r[train].min()), abs=1e-3)
    kept = evaluate(threshold_reward, data, {"t": 1.0, TERMINAL_KEY: 5.0, FLOOR_KEY: -2.0},
                    fit=FitSettings(params=False, terminal=False))
    assert kept.params[TERMINAL_KEY] == 5.0 and kept.params[FLOOR_KEY] == -2.0
