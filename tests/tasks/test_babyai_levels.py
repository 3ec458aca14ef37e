"""BabyAI levels as grace tasks: the vector against minigrid's own observation, missions parsed
from the instruction objects, the bot expert, the committed demos and the reference rewards."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("minigrid")

from grace.data.rollout import random_negatives, rollout  # noqa: E402
from grace.data.trajectories import load_demos  # noqa: E402
from grace.program import RewardProgram  # noqa: E402
from grace.tasks import get_task, task_names  # noqa: E402
from grace.tasks.babyai import encoding as enc  # noqa: E402
from grace.tasks.babyai.levels import LEVELS, MAX_STEPS, BabyAIVectorEnv, BotExpert  # noqa: E402

DEMOS = Path(__file__).resolve().parents[2] / "demos"


def test_levels_are_registered_goal_tasks() -> None:
    assert set(LEVELS) <= set(task_names())
    for name in LEVELS:
        t = get_task(name)
        assert t.kind == "goal" and t.obs_dim == 155 and t.action.n == 7
        seen = " ".join(t.prompt_info().values()).lower()
        assert "reward" not in t.description.lower() and t.true_reward_doc.lower() not in seen
        if t.reference_reward is not None:
            RewardProgram.from_file(t.reference_reward).validate(t.schema)


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_vector_is_minigrids_observation(level: str) -> None:
    env = BabyAIVectorEnv(level)
    inner = env.env
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        vec, _ = env.reset(seed=seed)
        raw, _ = inner.reset(seed=seed)  # same seed: same layout; compare to minigrid's own dict
        np.testing.assert_array_equal(vec[:147], raw["image"].reshape(-1))
        assert env.unwrapped.max_steps == MAX_STEPS[level]
        for t in range(1, 6):
            a = int(rng.integers(7))
            vec, *_ = env.step(a)
            obs = inner.unwrapped.gen_obs()
            np.testing.assert_array_equal(vec[:147], obs["image"].reshape(-1))
            assert vec[enc.DIRECTION] == obs["direction"]
            assert vec[enc.STEP_FRAC] == pytest.approx(t / MAX_STEPS[level])
            # the derived front cell is the grid cell in front of the agent in the world
            u = inner.unwrapped
            cell = u.grid.get(*u.front_pos)
            if cell is None:
                assert vec[enc.FRONT] == enc.OBJECTS["EMPTY"]
            else:
                assert vec[enc.FRONT] == enc.OBJECTS[cell.type.upper()]
                assert vec[enc.FRONT + 1] == enc.COLORS[cell.color.upper()]
    env.close()


def _mission(level: str, seed: int = 0) -> tuple[np.ndarray, object]:
    env = BabyAIVectorEnv(level)
    vec, _ = env.reset(seed=seed)
    return vec[enc.M_VERB:enc.STEP_FRAC], env.unwrapped


def test_missions_are_parsed_from_the_instruction_objects() -> None:
    m, u = _mission("BabyAI-GoToRedBall-v0")
    assert list(m[:3]) == [enc.VERBS["VERB_GOTO"], enc.OBJECTS["BALL"], enc.COLORS["RED"]]
    assert list(m[4:]) == [-1, -1]
    for seed in range(4):
        m, u = _mission("BabyAI-GoToLocal-v0", seed)
        desc = u.instrs.desc
        assert m[1] == enc.OBJECTS[desc.type.upper()] and m[2] == enc.COLORS[desc.color.upper()]
        assert desc.color in u.mission and desc.type in u.mission
        m, u = _mission("BabyAI-PickupLoc-v0", seed)
        assert m[0] == enc.VERBS["VERB_PICKUP"] and m[1] == enc.OBJECTS[u.instrs.desc.type.upper()]
        want_loc = {None: 0, "front": 1, "behind": 2, "left": 3, "right": 4}[u.instrs.desc.loc]
        assert m[3] == want_loc
        m, u = _mission("BabyAI-OpenTwoDoors-v0", seed)
        first, second = u.instrs.instr_a.desc, u.instrs.instr_b.desc
        assert list(m) == [enc.VERBS["VERB_OPEN"], enc.OBJECTS["DOOR"], enc.COLORS[first.color.upper()], 0,
                           enc.OBJECTS["DOOR"], enc.COLORS[second.color.upper()]]
        assert u.mission.index(first.color) < u.mission.rindex(second.color)
    m, u = _mission("BabyAI-OpenDoorColor-v0")
    assert m[0] == enc.VERBS["VERB_OPEN"] and m[2] == enc.COLORS[u.instrs.desc.color.upper()]
    m, u = _mission("BabyAI-PutNextLocal-v0")  # not a registered task; the parser covers the verb
    assert m[0] == enc.VERBS["VERB_PUTNEXT"] and m[4] == enc.OBJECTS[u.instrs.desc_fixed.type.upper()]


def test_unsupported_instructions_are_one_clear_error() -> None:
    from minigrid.envs.babyai.core.verifier import AndInstr, BeforeInstr, GoToInstr, ObjDesc

    inner = AndInstr(GoToInstr(ObjDesc("ball", "red")), GoToInstr(ObjDesc("key")))
    with pytest.raises(enc.MissionError, match="not a single action"):
        enc.mission_vector(BeforeInstr(inner, GoToInstr(ObjDesc("box"))))


def test_bot_expert_succeeds_through_the_rollout_hook() -> None:
    task = get_task("BabyAI-GoToRedBall-v0")
    traj = rollout(task, BotExpert(), episodes=3, seed=5)
    assert all(ep.terminated for ep in traj.episodes())
    assert all(task.success(float(r), True, None) for r in traj.returns())
    with pytest.raises(RuntimeError, match="start_episode"):
        BotExpert()(np.zeros(155, np.float32), np.random.default_rng(0))


@pytest.mark.parametrize("level", sorted(LEVELS))
def test_committed_demos_are_eight_successes_ending_at_the_goal(level: str) -> None:
    task = get_task(level)
    traj = load_demos(DEMOS / f"{level}.npz", task)
    eps = list(traj.episodes())
    assert len(eps) == 8 and all(ep.terminated and ep.rewards.sum() > 0 for ep in eps)
    final = task.schema.derived_values(np.stack([ep.obs[-1] for ep in eps]))
    key = {"BabyAI-PickupLoc-v0": "carrying_target", "BabyAI-OpenTwoDoors-v0": "front_is_target2"}
    assert np.all(final[key.get(level, "front_is_target")] == 1.0)


def test_random_negatives_run_on_a_level() -> None:
    traj = random_negatives(get_task("BabyAI-OpenTwoDoors-v0"), episodes=2, seed=0)
    assert traj.n_episodes == 2 and traj.obs_dim == 155


@pytest.mark.parametrize(("level", "reward"), [("BabyAI-GoToRedBall-v0", "babyai_gotoredball.py"),
                                              ("BabyAI-GoToRedBall-v0", "babyai_goto.py"),
                                              ("BabyAI-GoToLocal-v0", "babyai_goto.py")])
def test_reference_goto_rewards_discriminate_offline(level: str, reward: str) -> None:
    """The hand-written GoTo rewards rank the demos' goal transitions above the other expert
    transitions and random-policy rollouts (the sandboxed offline fitness). The calibrated
    fitness stays below 1: random episodes that happen to face the target end there, in exactly
    an expert goal state (about one random episode in seven on GoToRedBall)."""
    from grace.api import resolve_context, score_programs

    program = RewardProgram.from_file(Path(get_task(level).reference_reward).parent / reward)
    ctx = resolve_context(program, level, str(DEMOS / f"{level}.npz"), None)
    (res,) = score_programs([program], ctx)
    assert res.ok, res.error
    m = res.metrics
    assert m["auc_train"] >= 0.99 and m["auc_heldout"] >= 0.99
    assert m["fitness_train"] >= 0.95 and m["fitness_heldout"] >= 0.9


def _fake_twin(level: str) -> tuple[str, str]:
    return ("twin", level)


def test_jax_twin_hook_is_one_name(monkeypatch: pytest.MonkeyPatch) -> None:
    from grace.tasks.babyai import levels
    from grace.tasks.babyai.jax_grid import GridLevel

    tasks = levels.babyai_tasks()
    assert all(t.jax_backend == "gymnax" for t in tasks.values())  # wired to the JAX twins
    env, params = tasks["BabyAI-GoToRedBall-v0"].make_jax_env()
    assert isinstance(env, GridLevel)
    assert params.max_steps_in_episode == levels.MAX_STEPS["BabyAI-GoToRedBall-v0"]
    monkeypatch.setattr(levels, "JAX_TWIN_FACTORY", None)
    assert all(t.make_jax_env is None and not t.jax_backend for t in levels.babyai_tasks().values())
    monkeypatch.setattr(levels, "JAX_TWIN_FACTORY", f"{__name__}:_fake_twin")
    task = levels.babyai_tasks()["BabyAI-OpenTwoDoors-v0"]
    assert task.jax_backend == "gymnax" and task.make_jax_env() == ("twin", "BabyAI-OpenTwoDoors-v0")
