"""The terminal value and the episode-return margin (grace/fitness/returns.py): what they decide
in a small MDP, and that the sandbox, PPO and every export pay the same reward at the same steps
(the program's total less the terminal value's shift, plus its lump on termination)."""

from __future__ import annotations

import numpy as np
import pytest

from grace.export import export_program
from grace.fitness.returns import (
    Grouping,
    absorbing_reward,
    episode_returns,
    fit_terminal,
    payment,
    return_ranking,
    terminal_value,
)
from grace.program import FLOOR_KEY, TERMINAL_KEY, RewardProgram
from grace.tasks import get_task
from tests.fitness.lockstep import ppo_and_gymnax_export
from tests.test_export import load_module

GAMMA = 0.99


# -- a terminating toy MDP ------------------------------------------------------------------------
# States 0 (good, where the expert stays) and 1 (bad). Actions: 0 = stay in / go to the good state,
# 1 = drift to the bad state, 2 = quit (the episode terminates). The reward is what a search could
# recover: it ranks the good state above the bad one, but it is negative everywhere, as the
# first-wave CartPole winner was.
R = np.array([-0.5, -1.0])


def _optimal_policy(terminal: float, floor: float | None = None) -> np.ndarray:
    """Value iteration with what grace pays (`applied_reward`): the landing state's reward less the
    terminal value's shift; quitting pays its lump and ends the episode (worth 0 after)."""
    shift, lump = payment(terminal, floor, GAMMA)
    paid = R - shift
    v = np.zeros(2)
    for _ in range(5000):
        q = np.stack([
            np.full(2, paid[0] + GAMMA * v[0]),  # stay good
            np.full(2, paid[1] + GAMMA * v[1]),  # drift bad
            paid + lump,  # quit from where you are: this state's reward, then the absorbing state
        ], axis=1)
        v = q.max(axis=1)
    return q.argmax(axis=1)


def _toy_data() -> dict[str, np.ndarray]:
    """Expert episodes: 50 steps in the good state, truncated. Negative episodes: wander into the
    bad state and quit after a few steps (terminated)."""
    rows: dict[str, list] = {k: [] for k in ("r", "episode", "step", "terminal", "expert")}
    ep = 0
    for _ in range(4):
        for t in range(50):
            rows["r"].append(R[0]), rows["episode"].append(ep), rows["step"].append(t)
            rows["terminal"].append(False), rows["expert"].append(True)
        ep += 1
    for length in (3, 5, 8, 13):
        for t in range(length):
            rows["r"].append(R[1] if t % 2 else R[0]), rows["episode"].append(ep), rows["step"].append(t)
            rows["terminal"].append(t == length - 1), rows["expert"].append(False)
        ep += 1
    return {k: np.asarray(v) for k, v in rows.items()}


def test_only_the_learned_terminal_value_makes_the_expert_policy_optimal() -> None:
    d = _toy_data()
    learned = fit_terminal(d["r"], d["episode"], d["step"], d["terminal"], d["expert"], GAMMA)
    assert learned == pytest.approx(terminal_value(R.min(), GAMMA))  # ending = the worst state forever
    assert list(_optimal_policy(learned)) == [0, 0]  # stay in the good state, never quit
    assert _optimal_policy(0.0)[0] == 2  # no terminal value: the expert's state is left by quitting
    with_learned = return_ranking(d["r"], d["episode"], d["step"], d["expert"], learned, GAMMA)
    without = return_ranking(d["r"], d["episode"], d["step"], d["expert"], 0.0, GAMMA)
    assert with_learned["return_ranking"] == 1.0 and without["return_ranking"] == 0.0


def test_a_goal_reached_by_the_experts_gets_the_optimistic_value() -> None:
    d = _toy_data()
    flipped = {**d, "expert": ~d["expert"]}  # now the episodes that terminate are the experts'
    learned = fit_terminal(d["r"], d["episode"], d["step"], d["terminal"], flipped["expert"], GAMMA)
    assert learned == pytest.approx(terminal_value(R.max(), GAMMA))
    ranked = return_ranking(d["r"], d["episode"], d["step"], flipped["expert"], learned, GAMMA, floor=R.min(),
                            terminated=d["terminal"])
    assert ranked["return_ranking"] == 1.0


def test_the_terminal_value_is_paid_so_that_no_payment_on_the_data_is_negative() -> None:
    """Falling over (ending as bad as the worst state) is paid as a shift: every step pays r - r_abs
    >= 0 and ending pays 0. A goal (as good as the best state) is paid as a lump: every step pays
    r - floor >= 0 and reaching it pays the rest, not a living penalty r - r_max <= 0. Either way the
    optimal policy is the terminal value's (any constant shift is paid in every state)."""
    low, high = terminal_value(R.min(), GAMMA), terminal_value(R.max(), GAMMA)
    assert payment(low, R.min(), GAMMA) == pytest.approx((R.min(), 0.0))
    shift, lump = payment(high, R.min(), GAMMA)
    assert shift == pytest.approx(R.min()) and lump == pytest.approx(terminal_value(R.max() - R.min(), GAMMA))
    assert payment(high, None, GAMMA) == pytest.approx((R.max(), 0.0))  # a file without a floor: the shift
    assert payment(0.0, None, GAMMA) == (0.0, 0.0)
    for terminal in (low, high, 0.0, -20.0, 20.0):
        assert list(_optimal_policy(terminal, R.min())) == list(_optimal_policy(terminal))


def test_without_terminations_there_is_no_terminal_value() -> None:
    d = _toy_data()
    assert fit_terminal(d["r"], d["episode"], d["step"], np.zeros_like(d["terminal"]), d["expert"], GAMMA) is None


def test_returns_are_shift_invariant_with_the_terminal_value() -> None:
    """The terminal value learned for r + c stands for an absorbing state paying r_abs + c, so
    what grace pays, r + c - (r_abs + c), and every episode's return, truncated ones included, do
    not depend on c: neither can the ranking or what is optimal. So with the floor (r.min() + c)."""
    d = _toy_data()
    for expert in (d["expert"], ~d["expert"]):  # falling over, then reaching a goal
        for c in (-3.0, 0.7, 10.0):
            a = fit_terminal(d["r"], d["episode"], d["step"], d["terminal"], expert, GAMMA)
            b = fit_terminal(d["r"] + c, d["episode"], d["step"], d["terminal"], expert, GAMMA)
            assert absorbing_reward(b, GAMMA) == pytest.approx(absorbing_reward(a, GAMMA) + c)
            for floor in (None, R.min()):
                fb = None if floor is None else floor + c
                _, ga = episode_returns(d["r"], d["episode"], d["step"], a, GAMMA, floor, d["terminal"])
                _, gb = episode_returns(d["r"] + c, d["episode"], d["step"], b, GAMMA, fb, d["terminal"])
                np.testing.assert_allclose(gb, ga, rtol=1e-9, atol=1e-9)
                is_exp = expert[np.unique(d["episode"], return_index=True)[1]]
                wins = ga[is_exp].min() > ga[~is_exp].max()
                # the expert out-earns the rest, except on the goal task paid as a shift by r_max:
                # the truncated wanderers pay r - r_max = 0 at best, the goal-reachers a living penalty
                assert wins == (floor is not None or expert is d["expert"])


# -- the same reward everywhere ---------------------------------------------------------------------
TERMINAL = -37.5


@pytest.fixture(scope="module", params=[{TERMINAL_KEY: TERMINAL}, {TERMINAL_KEY: -TERMINAL, FLOOR_KEY: 0.2}],
                ids=["shift", "lump"])
def program(request) -> RewardProgram:
    """CartPole's reference reward with a terminal value paid as a shift, then (a goal-like value
    above its floor) as a shift by the floor and a lump on termination."""
    task = get_task("cartpole")
    return RewardProgram.from_file(task.reference_reward).with_params(
        RewardProgram.from_file(task.reference_reward).params | request.param)


def _paid(program: RewardProgram) -> tuple[float, float]:
    return payment(program.params[TERMINAL_KEY], program.params.get(FLOOR_KEY), GAMMA)


def test_gymnasium_export_pays_the_total_less_the_shift_plus_the_lump_on_every_step(program, tmp_path) -> None:
    import gymnasium

    task = get_task("cartpole")
    path = tmp_path / "cp_gym.py"
    path.write_text(export_program(program, task, "gymnasium"))
    mod = load_module(path)
    env = mod.GraceReward(gymnasium.make("CartPole-v1", max_episode_steps=15))
    rng = np.random.default_rng(1)
    seen = {"terminated": 0, "truncated": 0}
    obs, _ = env.reset(seed=3)
    for _ in range(300):
        action = int(rng.integers(2)) if rng.random() < 0.7 else int(obs[2] > 0)
        nxt, reward, terminated, truncated, _ = env.step(action)
        total = float(mod.reward_and_components(obs, np.asarray(action), nxt)[0])
        shift, lump = _paid(program)
        assert reward == pytest.approx(total - shift + lump * terminated, abs=1e-5)
        assert reward == pytest.approx(float(mod.reward_fn(obs, np.asarray(action), nxt, terminated=terminated)))
        seen["terminated"] += terminated
        seen["truncated"] += truncated and not terminated
        obs = nxt
        if terminated or truncated:
            obs, _ = env.reset()
    assert seen["terminated"] and seen["truncated"]  # both paths ran


def test_ppo_env_and_gymnax_export_agree_on_every_step(program, tmp_path) -> None:
    """The reward PPO trains on (CandidateRewardEnv, through the sandbox's jax compile) and the
    gymnax export give the same reward at every step, terminations and time limits included."""
    kinds = {"terminated": 0, "truncated": 0}
    for i, step in enumerate(ppo_and_gymnax_export(program, tmp_path, 120)):
        assert step.done == step.done_export
        assert step.r_ppo == pytest.approx(step.r_export, abs=1e-4), i
        if step.done:
            kinds["terminated" if step.terminated else "truncated"] += 1
    assert kinds["terminated"] and kinds["truncated"]


def test_the_sandbox_scores_the_same_episode_returns_as_the_export(program, tmp_path) -> None:
    """`grace eval`'s episode returns (sandbox, numpy) equal the discounted sum of what the
    imitation export pays on the same transitions (its `done` = termination)."""
    from grace.fitness.batched import call_reward
    from grace.sandbox.compile import compile_reward

    task = get_task("cartpole")
    path = tmp_path / "cp_imitation.py"
    path.write_text(export_program(program, task, "imitation"))
    mod = load_module(path)
    rng = np.random.default_rng(0)
    s = rng.normal(scale=0.1, size=(40, 4)).astype(np.float32)
    s2 = rng.normal(scale=0.1, size=(40, 4)).astype(np.float32)
    a = rng.integers(0, 2, size=40)
    episode, step = np.repeat(np.arange(4), 10), np.tile(np.arange(10), 4)
    terminal = (step == 9) & (episode % 2 == 0)
    compiled = compile_reward(program.source, task.schema)
    r, _ = call_reward(compiled, {"s": s, "a": a, "s_next": s2}, program.params)
    _, g = episode_returns(r, episode, step, program.params[TERMINAL_KEY], GAMMA, program.params.get(FLOOR_KEY),
                           terminal)
    paid = mod.imitation_reward(s, a, s2, terminal).astype(np.float64)
    expected = np.bincount(episode, weights=paid * GAMMA ** step)
    np.testing.assert_allclose(g, expected, rtol=1e-5, atol=1e-4)


def test_a_huge_reward_gives_a_terminal_value_the_file_can_hold() -> None:
    """A reward of ~1e29 made gamma * r / (1 - gamma) overflow what PARAMS may hold, and the
    candidate failed; the value is clipped to the contract's range (the ranking is unchanged)."""
    from grace.program import PARAM_ABS_MAX

    d = _toy_data()
    term = fit_terminal(d["r"] * 1e29, d["episode"], d["step"], d["terminal"], d["expert"], GAMMA)
    assert term is not None and abs(term) == PARAM_ABS_MAX
    assert terminal_value(-1e29, GAMMA) == -PARAM_ABS_MAX
    program = RewardProgram('PARAMS = {"w": 1.0}\n\n\ndef reward(s, a, s_next, p):\n    return p["w"]\n')
    assert program.with_params({"w": 1.0, TERMINAL_KEY: term}).params[TERMINAL_KEY] == term


def test_grouping_made_once_ranks_as_made_per_call():
    """`offline` groups the train rows by episode once per evaluation and ranks every candidate
    reward on it: the same numbers as grouping inside each call, rows in any order."""
    rng = np.random.default_rng(0)
    n = 600
    episode = rng.permutation(np.repeat(np.arange(30), 20))
    step = np.zeros(n, int)
    for e in range(30):
        step[episode == e] = np.arange(20)
    terminal = (step == 19) & (episode % 3 == 0)
    expert = episode < 10
    groups = Grouping(episode, step, expert, GAMMA, terminal)
    for _ in range(3):
        r = rng.normal(size=n) + expert
        for tv in (-5.0, 0.0, 2.5):
            for floor in (None, -1.0):
                assert return_ranking(r, episode, step, expert, tv, GAMMA, groups, floor) == \
                    return_ranking(r, episode, step, expert, tv, GAMMA, floor=floor, terminated=terminal)
        assert fit_terminal(r, episode, step, terminal, expert, GAMMA, groups=groups) == \
            fit_terminal(r, episode, step, terminal, expert, GAMMA)
