"""The built-in offline operator: valid, executable, deterministic, data-driven programs."""

from __future__ import annotations

import asyncio
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import rankdata

from grace.program import RewardProgram
from grace.proposers.base import Feedback, Proposer, TaskContext
from grace.proposers.offline.operator import OfflineProposer
from grace.proposers.offline.terms import parse_program
from grace.sandbox.views import view
from grace.tasks import ActionSpace, Field, ObsSchema, get_task, task_names

XP = types.SimpleNamespace(
    **{k: getattr(np, k) for k in (
        "abs sqrt exp log tanh clip where minimum maximum sum mean dot sin cos arctan2 pi "
        "square sign").split()},
    linalg=types.SimpleNamespace(norm=np.linalg.norm),
)
ALLOWED = {"abs", "sqrt", "exp", "log", "tanh", "clip", "where", "minimum", "maximum", "sum",
           "mean", "linalg", "norm", "dot", "sin", "cos", "arctan2", "pi", "square", "sign"}
USER_SCHEMA = ObsSchema((Field("zeta_Q7"), Field("vec3d", size=3), Field("cosPhase"),
                         Field("sinPhase"), Field("x")))
USER_ACTION = ActionSpace("continuous", shape=(2,))


def run(coro):
    return asyncio.run(coro)


def evaluate(src: str, schema: ObsSchema, obs: np.ndarray, act: np.ndarray) -> np.ndarray:
    """Test-only evaluator: exec the module with numpy as `xp` and named views."""
    ns: dict = {"xp": XP}
    exec(compile(src, "<reward>", "exec"), ns)
    out = ns["reward"](view(obs, schema), act, view(obs, schema), ns["PARAMS"])
    total = out[0] if isinstance(out, tuple) else out
    return np.asarray(total, dtype=float)


def make_ctx(name: str, schema: ObsSchema, action: ActionSpace, seed: int = 0, n: int = 32) -> TaskContext:
    rng = np.random.default_rng(seed)

    def states(scale: float) -> list[dict]:
        out = []
        for _ in range(n):
            out.append({f.name: (float(rng.normal(0, scale)) if f.size == 1
                                 else rng.normal(0, scale, f.size).tolist()) for f in schema.fields})
        return out

    return TaskContext(name, "test task", schema, action, "keepalive", states(0.3), states(1.0))


def contexts() -> list[TaskContext]:
    out = []
    for name in task_names():
        task = get_task(name)
        out.append(make_ctx(name, task.schema, task.action))
    out.append(make_ctx("user", USER_SCHEMA, USER_ACTION))
    return out


CTXS = contexts()


def actions(ctx: TaskContext, batch: int | None, rng: np.random.Generator) -> np.ndarray:
    if ctx.action.kind == "discrete":
        return rng.integers(ctx.action.n, size=batch) if batch else np.int64(1)
    return rng.uniform(-1, 1, (batch, ctx.action.dim) if batch else (ctx.action.dim,))


def check_source(src: str, ctx: TaskContext) -> RewardProgram:
    prog = RewardProgram(src).validate(ctx.schema)
    assert "axis=1" not in src
    import ast

    for node in ast.walk(prog.tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "xp":
            assert node.attr in ALLOWED, node.attr
    return prog


def test_protocol() -> None:
    assert isinstance(OfflineProposer(), Proposer)
    assert OfflineProposer().name == "offline"


@pytest.mark.parametrize("ctx", CTXS, ids=[c.name for c in CTXS])
def test_init_valid_distinct_executable(ctx: TaskContext) -> None:
    props = run(OfflineProposer().init(ctx, 12, seed=3))
    assert len(props) == 12
    ids = set()
    rng = np.random.default_rng(0)
    for p in props:
        assert p.operator == "init" and p.meta["mutation"].startswith("init")
        prog = check_source(p.source, ctx)
        assert prog.summary.startswith("Reward: ")
        ids.add(prog.program_id)
        obs = rng.normal(size=(7, ctx.schema.width))
        r = evaluate(p.source, ctx.schema, obs, actions(ctx, 7, rng))
        assert r.shape == (7,) and np.all(np.isfinite(r))
        r1 = evaluate(p.source, ctx.schema, obs[0], actions(ctx, None, rng))
        assert np.shape(r1) == () and np.isfinite(r1)
        assert parse_program(prog, ctx.schema, ctx.action) is not None  # round trip
    assert len(ids) == 12


def test_init_deterministic() -> None:
    ctx = CTXS[-1]
    a = [p.source for p in run(OfflineProposer().init(ctx, 10, seed=5))]
    b = [p.source for p in run(OfflineProposer().init(ctx, 10, seed=5))]
    assert a == b


def feedback(src: str, ctx: TaskContext) -> Feedback:
    prog = RewardProgram(src)
    worst = [{"label": "expert", "reward": -3.0, "state": ctx.expert_states[0], "components": {}},
             {"label": "negative", "reward": 2.0, "state": ctx.negative_states[0], "components": {}}]
    return Feedback(prog, 0.6, worst=worst, program_id=prog.program_id)


CARTPOLE_REF = (Path(__file__).resolve().parents[2] / "grace/tasks/rewards/cartpole.py").read_text()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), which=st.integers(0, len(CTXS) - 1))
def test_operators_valid_over_seeds(seed: int, which: int) -> None:
    ctx = CTXS[which]
    prop = OfflineProposer()
    pop = run(prop.init(ctx, 6, seed=0))
    fa, fb = feedback(pop[seed % 6].source, ctx), feedback(pop[(seed + 1) % 6].source, ctx)
    rng = np.random.default_rng(seed)
    for p in (run(prop.mutate(ctx, fa, seed)), run(prop.crossover(ctx, fa, fb, seed)),
              run(prop.simplify(ctx, fa, seed))):
        assert p.source is not None, p.error
        assert "mutation" in p.meta
        check_source(p.source, ctx)
        r = evaluate(p.source, ctx.schema, rng.normal(size=(5, ctx.schema.width)), actions(ctx, 5, rng))
        assert r.shape == (5,) and np.all(np.isfinite(r))


def test_operators_deterministic() -> None:
    ctx = CTXS[0]
    pop = run(OfflineProposer().init(ctx, 4, seed=0))
    fa, fb = feedback(pop[0].source, ctx), feedback(pop[1].source, ctx)
    for seed in range(5):
        a, b = OfflineProposer(), OfflineProposer()
        assert run(a.mutate(ctx, fa, seed)).source == run(b.mutate(ctx, fa, seed)).source
        assert run(a.crossover(ctx, fa, fb, seed)).source == run(b.crossover(ctx, fa, fb, seed)).source
        assert run(a.simplify(ctx, fa, seed)).source == run(b.simplify(ctx, fa, seed)).source


def test_mutation_chain_explores() -> None:
    ctx = CTXS[-1]
    prop = OfflineProposer(max_terms=4)
    fb = feedback(run(prop.init(ctx, 1, seed=0))[0].source, ctx)
    kinds, ids = set(), set()
    for seed in range(60):
        p = run(prop.mutate(ctx, fb, seed))
        kinds.add(p.meta["mutation"])
        prog = check_source(p.source, ctx)
        ids.add(prog.program_id)
        if seed % 3 == 0:
            fb = feedback(p.source, ctx)
    assert {"add_term", "swap_shape", "replace_field"} <= kinds
    assert len(ids) > 30


@pytest.mark.parametrize("seed", range(12))
def test_mutate_handwritten_program(seed: int) -> None:
    task = get_task("cartpole")
    ctx = make_ctx("cartpole", task.schema, task.action)
    prop = OfflineProposer()
    ref = feedback(CARTPOLE_REF, ctx)
    for p in (run(prop.mutate(ctx, ref, seed)), run(prop.simplify(ctx, ref, seed)),
              run(prop.crossover(ctx, ref, feedback(run(prop.init(ctx, 1, 0))[0].source, ctx), seed))):
        assert p.source is not None, p.error
        check_source(p.source, ctx)
        rng = np.random.default_rng(seed)
        r = evaluate(p.source, ctx.schema, rng.normal(size=(4, 4)), actions(ctx, 4, rng))
        assert r.shape == (4,)
    m = run(prop.mutate(ctx, ref, seed))
    assert m.meta.get("generic") and RewardProgram(m.source).program_id != ref.program_id or m.meta["mutation"] == "perturb_const"


def test_simplify_drops_smallest_component() -> None:
    ctx = CTXS[-1]
    prop = OfflineProposer()
    src = next(p.source for p in run(prop.init(ctx, 12, 0)) if p.meta["terms"] >= 2)
    terms = parse_program(RewardProgram(src), ctx.schema, ctx.action)
    from grace.proposers.offline.terms import term_names

    names = term_names(terms)
    fb = feedback(src, ctx)
    fb.worst = [{"label": "expert", "reward": 0.0, "state": {},
                 "components": {n: (0.001 if n == names[0] else 5.0) for n in names}}]
    out = run(prop.simplify(ctx, fb, 0))
    assert out.meta["mutation"] == "drop_term" and out.meta["field"] == terms[0].feature.slug
    assert len(parse_program(RewardProgram(out.source), ctx.schema, ctx.action)) == len(terms) - 1
    assert set(RewardProgram(out.source).params) < set(RewardProgram(src).params)


def rank_auc(vp: np.ndarray, vn: np.ndarray) -> float:
    r = rankdata(np.concatenate([vp, vn]))
    return float((r[: len(vp)].sum() - len(vp) * (len(vp) + 1) / 2) / (len(vp) * len(vn)))


def test_init_finds_separating_field_from_stats() -> None:
    """Positives have |x| small, negatives large, on one field of four: found from stats alone."""
    schema = ObsSchema.from_names(["alpha", "bravo", "charlie", "delta"])
    rng = np.random.default_rng(1)
    pos = rng.normal(0, 1, (400, 4))
    neg = rng.normal(0, 1, (400, 4))
    pos[:, 2] = rng.normal(0, 0.1, 400)
    neg[:, 2] = rng.choice([-1, 1], 400) * rng.uniform(0.5, 2.0, 400)
    stats = {n: {f"{c}_{k}": float(fn(x[:, i])) for c, x in (("pos", pos), ("neg", neg))
                 for k, fn in (("mean", np.mean), ("std", np.std), ("min", np.min), ("max", np.max))}
             for i, n in enumerate(schema.names)}
    ctx = TaskContext("synthetic", "", schema, ActionSpace("discrete", n=2), "keepalive", stats=stats)
    props = run(OfflineProposer().init(ctx, 10, seed=0))
    act = np.zeros(400, dtype=int)
    best = max(rank_auc(evaluate(p.source, schema, pos, act), evaluate(p.source, schema, neg, act))
               for p in props)
    assert best > 0.9
    assert "charlie" in props[0].source


def test_programs_run_in_the_real_sandbox() -> None:
    from grace.sandbox.compile import CompiledReward

    prop = OfflineProposer()
    rng = np.random.default_rng(0)
    for ctx in CTXS:
        pop = run(prop.init(ctx, 4, seed=1))
        srcs = [p.source for p in pop] + [run(prop.mutate(ctx, feedback(pop[0].source, ctx), 1)).source]
        for src in srcs:
            obs = rng.normal(size=(6, ctx.schema.width))
            total, comps = CompiledReward(src, ctx.schema)(obs, actions(ctx, 6, rng), obs)
            assert total.shape == (6,) and comps


def test_action_effort_is_rendered_as_a_cost_and_parses_back() -> None:
    """Effort enters only as a cost (`cost_` weight, >= 0 by contract): never a bonus for acting."""
    from grace.proposers.offline.terms import Feature, Term, render

    ctx = make_ctx("user", USER_SCHEMA, USER_ACTION)
    src = render([Term("abs", Feature("field", ("x",)), {"w": 1.0, "c": 0.0}), Term("cost", Feature("effort"), {"w": 0.2})])
    assert '-p["cost_action_effort"] * xp.sum(a ** 2, axis=-1)' in src and "action effort as a cost" in src
    prog = check_source(src, ctx)
    assert prog.params["cost_action_effort"] > 0
    terms = parse_program(prog, ctx.schema, ctx.action)
    assert terms is not None and [t.shape for t in terms] == ["abs", "cost"]
    obs = np.zeros((4, USER_SCHEMA.width))
    effort = evaluate(src, USER_SCHEMA, obs, np.full((4, 2), 1.0))
    assert np.all(effort < evaluate(src, USER_SCHEMA, obs, np.zeros((4, 2))))  # acting only ever costs


def test_densify_gives_every_term_a_slope() -> None:
    """densify (for PPO in the loop): gates dropped, a bump becomes closeness to its centre, a
    threshold the linear term rising the same way; costs and dense shapes stay; errors when
    nothing changes or the program is outside the term grammar."""
    from grace.proposers.offline.terms import Feature, Term, render

    ctx = make_ctx("user", USER_SCHEMA, USER_ACTION)
    x, z = Feature("field", ("x",)), Feature("field", ("zeta_Q7",))
    src = render([Term("gauss", x, {"w": 1.5, "c": 0.3, "s": 0.1}, gate=(z, "<", 0.0)),
                  Term("below", z, {"w": 2.0, "t": 0.5}), Term("cost", Feature("effort"), {"w": 0.2})])
    out = run(OfflineProposer().densify(ctx, feedback(src, ctx), 0))
    assert out.operator == "densify" and out.error is None and out.meta["changed"] == 2
    terms = parse_program(check_source(out.source, ctx), ctx.schema, ctx.action)
    assert [(t.shape, t.gate) for t in terms] == [("abs", None), ("linear", None), ("cost", None)]
    assert terms[0].params["c"] == pytest.approx(0.3) and terms[1].params["w"] < 0  # below: lower pays
    obs = np.zeros((5, USER_SCHEMA.width))
    obs[:, USER_SCHEMA.slices["x"]] = np.linspace(-3, 0.3, 5)[:, None]  # far from the bump: flat before
    dense = evaluate(out.source, USER_SCHEMA, obs, np.zeros((5, 2)))
    assert np.all(np.diff(dense) > 0)  # now every step towards the centre pays
    again = run(OfflineProposer().densify(ctx, feedback(out.source, ctx), 0))
    assert again.source is None and "already dense" in again.error
    odd = run(OfflineProposer().densify(ctx, feedback(
        "def reward(s, a, s_next, p):\n    return xp.tanh(s_next.x) * 2.0\n", ctx), 0))
    assert odd.source is None and "not a term program" in odd.error
