"""The batched PARAMS search: vectorised calibration, broadcast reward calls and their check,
and the search itself against the sequential path (grace/fitness/params_batched.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from grace.config import FitSettings
from grace.data.dataset import build_offline_data
from grace.fitness import calibrate, evaluate
from grace.fitness import params as params_module
from grace.fitness.calibrate_many import _quantiles, calibrate_many
from grace.fitness.metrics import standardise
from grace.fitness.params import ParamSpace, fit_params
from grace.fitness.params_batched import BatchScorer
from grace.sandbox.compile import CompiledReward
from tests.fitness.test_fitness_offline import SCHEMA, synthetic_data, toy_task, toy_traj

THRESHOLD = '''PARAMS = {"t": 0.2, "w": 1.0}


def reward(s, a, s_next, p):
    hit = xp.where(s_next.x > p["t"], 1.0, 0.0)
    return p["w"] * hit, {"hit": hit}
'''
MEAN_CENTRED = '''PARAMS = {"w": 1.0}


def reward(s, a, s_next, p):
    r = p["w"] * s_next.x + s_next.x ** 2
    return r - xp.mean(r)
'''
BRANCHES = '''PARAMS = {"t": 0.5}


def reward(s, a, s_next, p):
    if p["t"] > 0:
        return s_next.x - p["t"]
    return -s_next.x
'''


@st.composite
def reward_rows(draw):
    n = draw(st.integers(8, 80))
    k = draw(st.integers(1, 6))
    y = np.array(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    y[0], y[1] = True, False
    rows = []
    for _ in range(k):
        kind = draw(st.sampled_from(["ints", "floats", "constant", "nan"]))
        if kind == "ints":
            rows.append(np.array(draw(st.lists(st.integers(-5, 5), min_size=n, max_size=n)), np.float64))
        elif kind == "floats":
            rows.append(np.array(draw(st.lists(st.floats(-1e3, 1e3), min_size=n, max_size=n))))
        elif kind == "constant":
            rows.append(np.full(n, draw(st.floats(-10, 10))))
        else:
            r = np.arange(n, dtype=np.float64)
            r[draw(st.integers(0, n - 1))] = np.nan
            rows.append(r)
    start = draw(st.one_of(st.none(), st.tuples(st.floats(0.01, 50.0), st.floats(-20.0, 20.0))))
    return np.array(rows), y, start


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reward_rows())
def test_calibrate_many_equals_calibrate_row_by_row(case):
    r, y, start = case
    many = calibrate_many(r, y, start=start)
    for i, row in enumerate(r):
        one = calibrate(row, y)
        assert many["fitness"][i] == pytest.approx(one["fitness"], abs=1e-7)
        if one["alpha"] > 1e-6:  # the same calibration (the solvers stop at slightly different points)
            assert many["alpha"][i] == pytest.approx(one["alpha"], rel=1e-3, abs=1e-6)
    assert np.all(np.isnan(calibrate_many(r, np.ones(len(y), bool))["fitness"]))


def test_call_many_equals_one_call_per_setting_on_float32_data():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(64, 3)).astype(np.float32)  # datasets are float32: PARAMS must not promote
    c = CompiledReward(THRESHOLD, SCHEMA)
    ts, ws = np.array([-0.5, 0.0, 0.31]), np.array([1.0, 2.5, -1.0])
    many = c.call_many(s, np.zeros(64), s, {"t": ts, "w": ws})
    assert many.shape == (3, 64) and many.dtype == np.float64
    for i in range(3):
        one, _ = c(s, np.zeros(64), s, {"t": float(ts[i]), "w": float(ws[i])})
        np.testing.assert_array_equal(many[i], one)


@pytest.mark.parametrize("source", [MEAN_CENTRED, BRANCHES])
def test_programs_that_do_not_broadcast_are_scored_one_by_one(source):
    """A batch-wide mean mixes the K settings silently; a branch on a parameter raises: both are
    caught (by the one-time comparison or the exception) and the scores equal one-by-one ones."""
    data = synthetic_data(seed=2)
    rows = np.flatnonzero(data["train"])[:400]
    sub = {k: data[k][rows] for k in ("s", "a", "s_next")}
    label = data["label"][rows].astype(bool)
    c = CompiledReward(source, SCHEMA)
    space = ParamSpace(c.params)
    scorer = BatchScorer(c, sub, label, space, FitSettings())
    u = np.array([[0.0], [0.5], [-0.7]])
    got = scorer(u)
    assert scorer.broadcast is False
    for ui, fi in zip(u, got, strict=True):
        r, _ = c(sub["s"], sub["a"], sub["s_next"], space.decode(ui))
        assert fi == pytest.approx(calibrate(r, label)["fitness"], abs=1e-7)


def test_an_elementwise_program_broadcasts_and_budget_caps_the_settings():
    data = synthetic_data(seed=2)
    rows = np.flatnonzero(data["train"])[:400]
    sub = {k: data[k][rows] for k in ("s", "a", "s_next")}
    c = CompiledReward(THRESHOLD, SCHEMA)
    space = ParamSpace(c.params)
    scorer = BatchScorer(c, sub, data["label"][rows].astype(bool), space, FitSettings(budget=5))
    f = scorer(np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0], [5.0, 0.0], [6.0, 0.0]]))
    assert scorer.broadcast is True and scorer.count == 5
    assert np.all(np.isfinite(f[:5])) and np.all(f[5:] == -np.inf)  # past the budget: worst, not scored
    assert scorer(np.array([[1.0, 0.0]]))[0] == f[1] and scorer.count == 5  # the cache answers


def test_batched_search_fits_the_threshold_as_the_sequential_one_in_fewer_calls(monkeypatch):
    data = synthetic_data()
    c = CompiledReward(THRESHOLD, SCHEMA)
    calls = {"many": 0, "one": 0}
    call_many, call_one = CompiledReward.call_many, CompiledReward.__call__

    def many(self, *a, **k):
        calls["many"] += 1
        return call_many(self, *a, **k)

    def one(self, *a, **k):
        calls["one"] += 1
        return call_one(self, *a, **k)

    monkeypatch.setattr(CompiledReward, "call_many", many)
    monkeypatch.setattr(CompiledReward, "__call__", one)
    batched, n_batched = fit_params(c, data, c.params, fit=FitSettings())
    batched_calls = dict(calls)
    calls.update(many=0, one=0)
    sequential, _ = fit_params(c, data, c.params, fit=FitSettings(batched=False))
    assert calls["many"] == 0 and calls["one"] > 50  # the old path: one setting per call
    assert 0.8 < batched["t"] <= 1.05 and 0.8 < sequential["t"] <= 1.05  # both find the boundary x = 1
    assert n_batched > 50 and batched_calls["many"] + batched_calls["one"] < n_batched / 3
    res = evaluate(c, data, c.params, fit=FitSettings(), schema=SCHEMA)
    assert res.fitness > 0.9 and 0.8 < res.params["t"] <= 1.05


def test_the_flag_selects_the_path(monkeypatch):
    data = synthetic_data(seed=1)
    c = CompiledReward(THRESHOLD, SCHEMA)

    def boom(*a, **k):
        raise AssertionError("the batched path ran")

    monkeypatch.setattr(params_module, "fit_params_batched", boom)
    fitted, n = params_module.fit_params(c, data, c.params, fit=FitSettings(batched=False))
    assert n > 1 and fitted != c.params
    with pytest.raises(AssertionError, match="batched path ran"):
        params_module.fit_params(c, data, c.params, fit=FitSettings())


def test_the_pick_weighs_the_subsample_fitness_by_whole_episode_returns():
    """`offline._pick`: a runner-up whose episodes rank right beats an answer that separates the
    states better but pays negatives more over whole episodes; equal scores keep the earlier
    candidate (the initial PARAMS, last, win only outright); a non-finite candidate is out."""
    from grace.fitness.offline import _pick

    rng = np.random.default_rng(4)  # nobody terminates: no terminal value can rescue a wrong sign
    data = build_offline_data(toy_task("keepalive"), toy_traj(rng, 8, 1.0, 2.0, terminated=False),
                              [("random", toy_traj(rng, 20, -1.0, 1.0, terminated=False))], seed=4)
    sign = CompiledReward('PARAMS = {"k": 1.0}\n\n\ndef reward(s, a, s_next, p):\n'
                          '    return p["k"] * s_next.x + 0.0 * xp.log(p["k"] + 2.0)\n', SCHEMA)
    expert = data["source"] == 0
    wrong, right, broken = {"k": -1.0}, {"k": 1.0}, {"k": -3.0}  # log(-1): NaN
    fit = FitSettings()
    assert _pick(sign, data, [(wrong, 0.9), (right, 0.8), (right, 0.8)], fit, {}, {}, expert)[0] == right
    assert _pick(sign, data, [(broken, 0.99), (wrong, 0.9), (right, 0.5)], fit, {}, {}, expert)[0] == right
    picked, calls = _pick(sign, data, [(right, 0.8), ({"k": 2.0}, 0.8)], fit, {}, {}, expert)
    assert picked == right and calls == 2


@settings(max_examples=60, deadline=None)
@given(st.lists(st.one_of(st.integers(-3, 3).map(float), st.floats(-1e6, 1e6)), max_size=60))
def test_rankdata_equals_scipy_average_ranks(values):
    """grace's own rankdata (the workers do not import scipy.stats) is scipy's "average" method."""
    from scipy.stats import rankdata as scipy_rankdata

    from grace.fitness.metrics import rankdata

    x = np.array(values, np.float64)
    np.testing.assert_array_equal(rankdata(x), scipy_rankdata(x) if len(x) else np.zeros(0))


def test_workers_preload_scipy_only_for_the_sequential_fit():
    from grace.search.executor import PRELOAD, SEQUENTIAL_FIT, preload_for

    assert not any(m.startswith("scipy") for m in PRELOAD)
    assert preload_for(FitSettings()) == PRELOAD
    assert preload_for(FitSettings(params=False, batched=False)) == PRELOAD
    assert set(SEQUENTIAL_FIT) <= set(preload_for(FitSettings(batched=False)))
    assert set(SEQUENTIAL_FIT) <= set(preload_for(None))


def test_centring_moves_every_step_like_constant_to_its_plateau_middle_in_three_calls():
    """`_centre` on a fitness that is flat on a box around the optimum: each constant lands near
    the middle of its own interval (to the bracket's resolution), a smooth constant stays, and the
    whole centring is three scoring calls (bracket, refine, the joint move's check)."""
    from grace.fitness.params_batched import _centre

    calls = []

    def score(u):
        u = np.atleast_2d(u)
        calls.append(len(u))
        box = (np.abs(u[:, 0] - 0.3) < 0.5) & (np.abs(u[:, 1] + 0.2) < 1.0)
        return np.where(box, 1.0, 0.5) - 10.0 * u[:, 2] ** 2  # u[2]: a smooth optimum at 0

    u = _centre(score, np.zeros(3), 1.0, 1e-4)
    assert len(calls) == 3
    assert abs(u[0] - 0.3) < 0.1 and abs(u[1] + 0.2) < 0.15 and u[2] == 0.0
    assert score(u[None, :])[0] == 1.0


def test_centring_falls_back_to_single_moves_when_the_joint_one_leaves_the_plateau():
    """A plateau that is not a box (a diagonal band): the joint move leaves it, so each constant's
    move is tried alone and only a point still on the plateau is kept."""
    from grace.fitness.params_batched import _centre

    def score(u):
        u = np.atleast_2d(u)
        return np.where((np.abs(u[:, 0] - u[:, 1]) < 0.3) & (np.abs(u[:, 0]) < 2) & (np.abs(u[:, 1]) < 2), 1.0, 0.5)

    u = _centre(score, np.zeros(2), 1.0, 1e-4)
    assert score(u[None, :])[0] == 1.0


def test_a_float64_indicator_term_on_float32_data_still_broadcasts():
    """`xp.where(..., 1.0, 0.0)` is float64 whatever the data: a one-by-one call multiplies it by a
    Python float, a broadcast call by the float32-cast (K, 1) PARAMS. The check allows that
    rounding (it sent a quarter of CartPole's programs to one-by-one scoring)."""
    data = synthetic_data(seed=2)
    rows = np.flatnonzero(data["train"])[:400]
    sub = {k: data[k][rows].astype(np.float32) if k != "a" else data[k][rows] for k in ("s", "a", "s_next")}
    src = ('PARAMS = {"w": 0.0215, "v": 0.001}\n\n\ndef reward(s, a, s_next, p):\n'
           '    return p["w"] * xp.where(s_next.x > 0.5, 1.0, 0.0) + p["v"] * s_next.x\n')
    c = CompiledReward(src, SCHEMA)
    space = ParamSpace(c.params)
    scorer = BatchScorer(c, sub, data["label"][rows].astype(bool), space, FitSettings())
    got = scorer(np.array([[0.0, 0.0], [0.37, 0.0], [-0.9, 0.0]]))
    assert scorer.broadcast is True
    for ui, fi in zip(np.array([[0.0, 0.0], [0.37, 0.0], [-0.9, 0.0]]), got, strict=True):
        r, _ = c(sub["s"], sub["a"], sub["s_next"], space.decode(ui))
        assert fi == pytest.approx(calibrate(r, data["label"][rows].astype(bool))["fitness"], abs=1e-5)


def test_a_reward_row_seen_before_is_not_calibrated_again(monkeypatch):
    """Settings that give the same reward row (here a weight scaled by 1 and an equal setting
    scored in two calls) take the fitness of the first solve."""
    import grace.fitness.params_batched as pb

    solved = []
    real = pb.calibrate_many

    def counting(r, *a, **k):
        solved.append(len(r))
        return real(r, *a, **k)

    monkeypatch.setattr(pb, "calibrate_many", counting)
    data = synthetic_data(seed=2)
    rows = np.flatnonzero(data["train"])[:400]
    sub = {k: data[k][rows] for k in ("s", "a", "s_next")}
    c = CompiledReward(THRESHOLD, SCHEMA)
    space = ParamSpace(c.params)
    scorer = BatchScorer(c, sub, data["label"][rows].astype(bool), space, FitSettings())
    hi = float(np.max(sub["s_next"][:, 0]))  # thresholds above every x: the all-zero reward row
    u = np.array([[(hi + 1.0) / 0.2 - 1.0, 0.0], [(hi + 2.0) / 0.2 - 1.0, 0.0], [0.5, 0.0]])
    f = scorer(u)
    assert solved == [2] and f[0] == f[1]
    assert scorer(np.array([[(hi + 3.0) / 0.2 - 1.0, 0.0]]))[0] == f[0] and solved == [2]


def test_the_last_runner_up_is_the_setting_least_like_the_answer():
    """Along a constant the subsample cannot see (here c, which the reward ignores, and w, which
    only scales it), every setting ties; the runners-up handed to the whole-episode pick include
    the farthest of them (the first scored among equally far ones), not only the answer's
    neighbours."""
    from grace.fitness.params_batched import fit_candidates

    data = synthetic_data(seed=3)
    src = 'PARAMS = {"w": 1.0, "c": 0.5}\n\n\ndef reward(s, a, s_next, p):\n    return p["w"] * s_next.x + 0.0 * p["c"]\n'
    c = CompiledReward(src, SCHEMA)
    found, _ = fit_candidates(c, data, c.params, fit=FitSettings(), n=3)
    answer, *runners, initial = found
    assert initial[0] == c.params and len(runners) == 2
    # the scan's widest move (1.5 x each value's magnitude) in one of the constants
    assert max(max(abs(r["c"] - answer[0]["c"]) / 0.5, abs(r["w"] - answer[0]["w"])) for r, _ in runners) >= 1.5


def test_calibrate_many_matches_calibrate_tightly_and_is_position_independent():
    """The vectorised solve equals the one-by-one one to 1e-9 (both stop within FTOL = 1e-10 of the
    same optimum); a row calibrates the same bit for bit wherever it sits in the batch (the
    search breaks ties between equal fitness by order: rounding must not decide them); a row
    whose positives score lower on average is chance without a solve, as the solve finds."""
    rng = np.random.default_rng(3)
    n = 1000
    for y in (rng.random(n) < 0.3, rng.permutation(n) < n // 2):  # the classes as many: read off a sort
        _check_against_calibrate(rng, y)


def _check_against_calibrate(rng: np.random.Generator, y: np.ndarray) -> None:
    n = len(y)
    x = rng.normal(size=n) + 1.2 * y
    rows = [x, -x, 2.5 * x + 1.0, (x > 0.4).astype(float), 3.0 * (x > 0.4), np.round(x, 1),
            x + 0.1 * rng.standard_cauchy(n), np.where(y, 1.0, 0.0), np.exp(x)]
    r = np.array(rows)
    centre, iqr = _quantiles(r, y)  # the same order statistics as the one-by-one standardisation
    for i, row in enumerate(r):
        _, c, scale = standardise(row, y)
        assert centre[i] == c and (iqr[i] == scale or iqr[i] <= 1e-12 * np.max(np.abs(row)))
    for start in (None, (2.0, -0.5), (40.0, 3.0)):
        many = calibrate_many(r, y, start=start)
        for i, row in enumerate(r):
            one = calibrate(row, y)
            # separable rows (the label itself) end on the ridge, where the objective is flat: the
            # two solvers stop further apart there
            tol = 1e-7 if calibrate(row, y)["fitness"] > 0.99 else 1e-9
            assert many["fitness"][i] == pytest.approx(one["fitness"], abs=tol)
        assert many["fitness"][1] == 0.0 and many["alpha"][1] == 0.0  # ranks negatives higher: chance
        assert many["fitness"][3] == many["fitness"][4]  # the same step, scaled: the same z
        for k in (1, 3, 4, 5, 8):  # the same row at every position of batches of every size
            same = calibrate_many(np.tile(r[0], (k, 1)), y, start=start)["fitness"]
            assert np.all(same == many["fitness"][0])
