"""Potential-based shaping (`potential(s, p)`): what it leaves unchanged in a small MDP, that the
sandbox, `grace eval`, PPO and the exports pay the same shaped reward on the same transitions, and
that a malformed potential is refused with one clear message."""

from __future__ import annotations

import numpy as np
import pytest

from grace.export import export_program
from grace.fitness.returns import applied_reward, episode_returns, potential_metrics, shaping_term
from grace.program import TERMINAL_KEY, ProgramError, RewardProgram
from grace.sandbox.compile import SandboxError, compile_reward
from grace.tasks import get_task
from tests.fitness.lockstep import ppo_and_gymnax_export
from tests.test_export import load_module

GAMMA = 0.99


# -- shaping leaves the optimal policy unchanged (Ng, Harada & Russell 1999) -----------------------
def _random_mdp(seed: int, n_states: int = 6, n_actions: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """P[s, a, s'] (with a last column: the absorbing end), R[s, a, s'] and a potential Phi[s]."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(n_states + 1, 0.3), size=(n_states, n_actions))
    r = rng.normal(size=(n_states, n_actions, n_states + 1))
    phi = rng.normal(scale=20.0, size=n_states)
    return p, r, phi


def _value_iteration(p: np.ndarray, r: np.ndarray, gamma: float) -> tuple[np.ndarray, np.ndarray]:
    """Q* of an MDP whose last next-state is absorbing (value 0); (greedy policy, Q*)."""
    v = np.zeros(p.shape[0])
    for _ in range(20000):
        q = np.einsum("ijk,ijk->ij", p, r + gamma * np.append(v, 0.0)[None, None, :])
        v_new = q.max(axis=1)
        if np.max(np.abs(v_new - v)) < 1e-12:
            break
        v = v_new
    return q.argmax(axis=1), q


@pytest.mark.parametrize("seed", range(5))
def test_shaping_leaves_the_optimal_policy_of_a_small_mdp_unchanged(seed: int) -> None:
    p, r, phi = _random_mdp(seed)
    n = p.shape[0]
    terminated = np.zeros(n + 1, bool)
    terminated[n] = True  # entering the absorbing end terminates the episode
    phi_next = np.append(phi, 123.0)  # whatever Phi says there, the absorbing state counts 0
    shaped = applied_reward(r, phi[:, None, None], phi_next[None, None, :], terminated[None, None, :], 0.0, GAMMA)
    pi, q = _value_iteration(p, r, GAMMA)
    pi_shaped, q_shaped = _value_iteration(p, shaped, GAMMA)
    assert list(pi_shaped) == list(pi)
    np.testing.assert_allclose(q_shaped, q - phi[:, None], atol=1e-6)  # Q' = Q - Phi exactly
    # a potential that does not vanish at the absorbing state is no longer potential-based
    wrong = r + GAMMA * phi_next[None, None, :] - phi[:, None, None]
    assert not np.allclose(_value_iteration(p, wrong, GAMMA)[1], q - phi[:, None], atol=1e-3)


def test_shaped_returns_telescope() -> None:
    """Along an episode, the shaping adds -Phi(s_0) (+ gamma^T Phi(s_T) when truncated)."""
    rng = np.random.default_rng(3)
    states = rng.normal(size=12)
    phi = np.cos(states)
    r = rng.normal(size=11)
    for ends in (False, True):
        term = np.zeros(11, bool)
        term[-1] = ends
        f = shaping_term(phi[:-1], phi[1:], term, GAMMA)
        _, g = episode_returns(r + f, np.zeros(11), np.arange(11), 0.0, GAMMA)
        _, g0 = episode_returns(r, np.zeros(11), np.arange(11), 0.0, GAMMA)
        tail = 0.0 if ends else GAMMA ** 11 * phi[-1]
        assert g[0] - g0[0] == pytest.approx(-phi[0] + tail, abs=1e-9)


def test_potential_metrics() -> None:
    step = np.tile(np.arange(10), 4)
    episode = np.repeat(np.arange(4), 10)
    expert = episode < 2
    phi = np.where(expert, step * 1.0, 0.5 * step - 1.0)
    m = potential_metrics(phi, episode, step, expert)
    assert m["potential_progress"] == pytest.approx(1.0)
    assert m["potential_above"] > 0.9
    m = potential_metrics(-phi, episode, step, expert)
    assert m["potential_progress"] == pytest.approx(-1.0) and m["potential_above"] < 0.1


# -- the same shaped reward everywhere ---------------------------------------------------------------
TERMINAL = -12.5
POTENTIAL = '''

def potential(s, p):
    """Upright and centred is worth more."""
    return p["phi_scale"] * (xp.cos(s.pole_angle / p["angle_limit"]) - 0.1 * xp.abs(s.cart_position))
'''


@pytest.fixture(scope="module")
def program() -> RewardProgram:
    base = RewardProgram.from_file(get_task("cartpole").reference_reward)
    shaped = RewardProgram(base.source.rstrip() + "\n" + POTENTIAL)
    return shaped.with_params(base.params | {"phi_scale": 3.0, TERMINAL_KEY: TERMINAL}).validate(get_task("cartpole").schema)


def _sandbox_applied(program: RewardProgram, s, a, s2, terminated, gamma: float = GAMMA) -> np.ndarray:
    compiled = compile_reward(program.source, get_task("cartpole").schema)
    r, _ = compiled(s, a, s2, program.params)
    return applied_reward(r, compiled.potential(s, program.params), compiled.potential(s2, program.params),
                          terminated, program.params[TERMINAL_KEY], gamma)


def test_the_program_and_its_potential(program) -> None:
    assert program.has_potential and program.potential_params == {"phi_scale"}
    assert "angle_limit" not in program.potential_params  # read by reward too: fitted as usual
    compiled = compile_reward(program.source, get_task("cartpole").schema)
    s = np.zeros((3, 4), np.float32)
    assert compiled.has_potential and compiled.potential(s, program.params) == pytest.approx([3.0] * 3)


def test_module_and_imitation_exports_pay_the_sandbox_reward(program, tmp_path) -> None:
    task = get_task("cartpole")
    rng = np.random.default_rng(0)
    s = rng.normal(scale=0.1, size=(40, 4)).astype(np.float32)
    s2 = rng.normal(scale=0.1, size=(40, 4)).astype(np.float32)
    a = rng.integers(0, 2, size=40)
    terminated = rng.random(40) < 0.3
    expected = _sandbox_applied(program, s, a, s2, terminated)
    for target, gamma in (("module", GAMMA), ("imitation", GAMMA), ("module", 0.9)):
        path = tmp_path / f"cp_{target}_{gamma}.py"
        path.write_text(export_program(program, task, target, gamma=gamma))
        mod = load_module(path)
        assert mod.GAMMA == gamma
        want = expected if gamma == GAMMA else _sandbox_applied(program, s, a, s2, terminated, gamma)
        got = (mod.imitation_reward(s, a, s2, terminated) if target == "imitation"
               else mod.reward_fn(s, a, s2, terminated=terminated))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # terminated=None: no transition terminates (shaping still applies, no terminal value)
    np.testing.assert_allclose(mod.reward_fn(s, a, s2), _sandbox_applied(program, s, a, s2, np.zeros(40, bool), 0.9)
                               - 0.0, rtol=1e-5, atol=1e-4)


def test_the_default_export_discount_is_the_tasks_ppo_discount(program, tmp_path) -> None:
    from grace.fitness.ppo import ppo_settings

    task = get_task("cartpole")
    path = tmp_path / "cp.py"
    path.write_text(export_program(program, task, "module"))
    assert load_module(path).GAMMA == ppo_settings(task)["gamma"]


def test_gymnasium_export_pays_the_shaped_reward(program, tmp_path) -> None:
    import gymnasium

    task = get_task("cartpole")
    path = tmp_path / "cp_gym.py"
    path.write_text(export_program(program, task, "gymnasium", gamma=GAMMA))
    mod = load_module(path)
    env = mod.GraceReward(gymnasium.make("CartPole-v1", max_episode_steps=15))
    rng = np.random.default_rng(1)
    seen = {"terminated": 0, "truncated": 0}
    obs, _ = env.reset(seed=3)
    for _ in range(200):
        action = int(rng.integers(2)) if rng.random() < 0.7 else int(obs[2] > 0)
        nxt, reward, terminated, truncated, _ = env.step(action)
        want = _sandbox_applied(program, obs[None], np.asarray([action]), nxt[None], np.asarray([terminated]))[0]
        assert reward == pytest.approx(want, abs=1e-4)
        seen["terminated"] += terminated
        seen["truncated"] += truncated and not terminated
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
    assert seen["terminated"] and seen["truncated"]


def test_ppo_env_and_gymnax_export_pay_the_same_shaped_reward(program, tmp_path) -> None:
    """CandidateRewardEnv (the sandbox's jax compile, PPO's discount) and the gymnax export agree
    at every step, terminations and time limits included, and equal the numpy sandbox's value."""
    from grace.fitness.ppo import ppo_settings

    gamma = float(ppo_settings(get_task("cartpole"))["gamma"])
    kinds = {"terminated": 0, "truncated": 0}
    for i, step in enumerate(ppo_and_gymnax_export(program, tmp_path, 100)):
        assert step.done == step.done_export
        want = _sandbox_applied(program, step.obs[None], np.asarray([step.action]), step.obs_next[None],
                                np.asarray([step.terminated]), gamma)[0]
        assert step.r_ppo == pytest.approx(step.r_export, abs=1e-3), i
        assert step.r_ppo == pytest.approx(want, abs=1e-3), i
        if step.done:
            kinds["terminated" if step.terminated else "truncated"] += 1
    assert kinds["terminated"] and kinds["truncated"]


def test_grace_eval_ranks_shaped_episode_returns_and_reports_the_potential(program) -> None:
    """The offline fitness ranks episodes by the shaped return the export pays, reports the
    potential's own metrics, and leaves the potential-only PARAMS unfitted."""
    from grace.config import FitSettings
    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.fitness.offline import evaluate

    task = get_task("cartpole")
    data = build_offline_data(task, load_demos("demos/cartpole.npz", task), [("random", random_negatives(task, 6, 0))])
    compiled = compile_reward(program.source, task.schema)
    res = evaluate(compiled, data, program.params, FitSettings(gamma=GAMMA, budget=20, centre_budget=0))
    assert res.params["phi_scale"] == 3.0
    for split in ("train", "heldout"):
        assert 0.0 <= res.metrics[f"potential_above_{split}"] <= 1.0
        assert -1.0 <= res.metrics[f"potential_progress_{split}"] <= 1.0
    train = data["train"].astype(bool)
    params = res.params
    paid = _sandbox_applied(program.with_params(params), data["s"], data["a"], data["s_next"], data["terminal"])
    expert = data["source"] == 0
    from grace.fitness.returns import return_ranking

    rank = return_ranking(paid[train], data["episode"][train], data["step"][train], expert[train], 0.0, GAMMA)
    assert res.metrics["return_ranking_train"] == pytest.approx(rank["return_ranking"])


# -- a malformed potential is refused with one clear message --------------------------------------
@pytest.mark.parametrize("bad, message", [
    ("def potential(s, a, s_next, p):\n    return s.pole_angle\n", "`potential` must take exactly 2 arguments (s, p)"),
    ("def potential(s):\n    return s.pole_angle\n", "`potential` must take exactly 2 arguments (s, p)"),
    ("def potential(s, p):\n    return s.pole_tilt\n", "unknown observation field s.pole_tilt"),
    ("def potential(s, p):\n    return p[\"nope\"] * s.pole_angle\n", "p['nope'] is used but PARAMS has no such key"),
])
def test_a_malformed_potential_is_refused(bad: str, message: str) -> None:
    task = get_task("cartpole")
    src = RewardProgram.from_file(task.reference_reward).source.rstrip() + "\n\n\n" + bad
    with pytest.raises(ProgramError) as exc:
        RewardProgram(src).validate(task.schema)
    assert message in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(SandboxError) as err:  # the worker refuses it too, before anything runs
        compile_reward(src, task.schema)
    assert "\n" not in str(err.value) and (message in str(err.value) or "'pole_tilt' is not allowed" in str(err.value))


def test_a_potential_that_returns_a_tuple_or_a_wrong_shape_fails_in_the_sandbox() -> None:
    task = get_task("cartpole")
    base = RewardProgram.from_file(task.reference_reward).source.rstrip() + "\n\n\n"
    s = np.zeros((5, 4))
    for body, message in (("return s.pole_angle, {}", "potential must return one float per state"),
                          ("return s.raw", "the potential has shape (5, 4)")):
        compiled = compile_reward(base + f"def potential(s, p):\n    {body}\n", task.schema)
        with pytest.raises(SandboxError, match=message.replace("(", r"\(").replace(")", r"\)")):
            compiled.potential(s)
