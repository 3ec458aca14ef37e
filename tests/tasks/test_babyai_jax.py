"""The JAX twin of the BabyAI levels against minigrid 3.2.0 itself.

Equivalence: the JAX state is built from minigrid's level after `reset(seed=k)`; the same random
actions then give identical observation vectors, rewards and episode ends in both. Generation:
the JAX generators follow the levels' rules (rooms, objects, doors, agent placement, instruction).
"""

from __future__ import annotations

import numpy as np
import pytest

minigrid = pytest.importorskip("minigrid")

import gymnasium as gym  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from minigrid.core.constants import COLOR_TO_IDX, OBJECT_TO_IDX, STATE_TO_IDX  # noqa: E402

from grace.tasks.babyai import jax_grid as jg  # noqa: E402
from grace.tasks.babyai.jax_convert import mission_fields, state_from_minigrid  # noqa: E402
from grace.tasks.babyai.jax_levels import LEVELS, make_jax_level  # noqa: E402

ACTION_P = np.array([0.15, 0.15, 0.3, 0.1, 0.1, 0.15, 0.05])
"""Random actions, forward and the object actions a little more often than uniform."""


def minigrid_vector(env: gym.Env, obs: dict) -> np.ndarray:
    """The shared 155-float vector from minigrid's raw observation (/tmp/babyai_encoding.md)."""
    u = env.unwrapped
    return np.concatenate([obs["image"].reshape(-1), [obs["direction"]], mission_fields(u.instrs),
                           [u.step_count / u.max_steps]]).astype(np.float32)


def guided(env: gym.Env, targets: dict[int, np.ndarray], rng: np.random.Generator) -> int:
    """Mostly towards the nearest object the instruction refers to, acting on it when facing it;
    a random action 1 time in 4 (so that episodes also wander, drop and toggle)."""
    if rng.random() < 0.25:
        return int(rng.choice(7, p=ACTION_P))
    u = env.unwrapped
    pos, d = np.asarray(u.agent_pos), int(u.agent_dir)
    tg = targets[2 if getattr(u.instrs, "a_done", None) == "success" else 1]
    dx, dy = tg[np.abs(tg - pos).sum(1).argmin()] - pos
    want = (0 if dx > 0 else 2) if abs(dx) >= abs(dy) else (1 if dy > 0 else 3)
    if want != d:
        return jg.RIGHT
    if abs(dx) + abs(dy) > 1:
        return jg.FORWARD
    return jg.PICKUP if type(u.instrs).__name__ == "PickupInstr" else jg.TOGGLE


def front_cell(env: gym.Env) -> tuple[int, ...]:
    cell = env.unwrapped.grid.get(*env.unwrapped.front_pos)
    return (1, 0, 0) if cell is None else tuple(cell.encode())


def minigrid_episode(env: gym.Env, seed: int, rng: np.random.Generator, events: dict[str, int]) -> tuple:
    """One minigrid episode (random actions, or guided ones for odd seeds): its start as a JAX
    state, the actions, and per step the observation vector, reward, terminated, truncated."""
    obs, _ = env.reset(seed=seed)
    state = state_from_minigrid(env)
    targets = {bit: np.argwhere(np.asarray(state.tgt) & bit) for bit in (1, 2)}
    steps = [(minigrid_vector(env, obs), 0.0, False, False)]
    actions = []
    while not (steps[-1][2] or steps[-1][3]):
        a = guided(env, targets, rng) if seed % 2 else int(rng.choice(7, p=ACTION_P))
        carried, before = env.unwrapped.carrying, front_cell(env)
        obs, r, term, trunc, _ = env.step(a)
        actions.append(a)
        steps.append((minigrid_vector(env, obs), float(r), term, trunc))
        events["pickup"] += carried is None and env.unwrapped.carrying is not None
        events["toggle"] += a == jg.TOGGLE and front_cell(env) != before
    events["success" if steps[-1][2] else "truncated"] += 1
    return state, actions, steps


def test_constants_are_minigrids() -> None:
    assert (jg.EMPTY, jg.WALL, jg.DOOR, jg.KEY, jg.BALL, jg.BOX) == tuple(
        OBJECT_TO_IDX[k] for k in ("empty", "wall", "door", "key", "ball", "box"))
    assert (jg.OPEN, jg.CLOSED, jg.LOCKED) == tuple(STATE_TO_IDX[k] for k in ("open", "closed", "locked"))
    assert jg.GREY == COLOR_TO_IDX["grey"] and jg.OBS_DIM == 155


@pytest.mark.parametrize("level", list(LEVELS))
def test_twin_matches_minigrid_step_for_step(level: str) -> None:
    env_jx, params = make_jax_level(level)
    horizon = params.max_steps_in_episode

    def run(state: jg.GridState, actions: jax.Array, params: jg.GridParams) -> tuple:
        def body(s: jg.GridState, a: jax.Array) -> tuple:
            obs, s, r, done, info = env_jx.step_env(jax.random.PRNGKey(0), s, a, params)
            return s, (obs, r, done, info["success"])
        return env_jx.get_obs(state, params), jax.lax.scan(body, state, actions)[1]

    run = jax.jit(run)
    env = gym.make(level)
    rng = np.random.default_rng(0)
    events = {"success": 0, "truncated": 0, "pickup": 0, "toggle": 0}
    for seed in range(6):
        state, actions, steps = minigrid_episode(env, seed, rng, events)
        assert env.unwrapped.max_steps == horizon and state.grid.shape[:2] == (env_jx.width, env_jx.height)
        n = len(actions)
        obs0, (obs, r, done, success) = jax.device_get(run(state, jnp.asarray(actions + [0] * (horizon - n), jnp.int32), params))
        np.testing.assert_array_equal(obs0, steps[0][0])
        for t, (o_mg, r_mg, term, trunc) in enumerate(steps[1:]):
            np.testing.assert_array_equal(obs[t], o_mg, err_msg=f"seed {seed} step {t}")
            assert r[t] == pytest.approx(r_mg, abs=1e-6)
            assert bool(done[t]) == (term or trunc) and bool(success[t]) == term
    assert events["success"] > 0 and events["truncated"] > 0, events
    assert events["pickup"] > 0 or level != "BabyAI-PickupLoc-v0"
    assert events["toggle"] > 0 or "Door" not in level


def _objects(grid: np.ndarray) -> np.ndarray:
    return np.argwhere((grid[..., 0] != jg.EMPTY) & (grid[..., 0] != jg.WALL))


@pytest.mark.parametrize("level", list(LEVELS))
def test_generated_layouts_follow_the_levels_rules(level: str) -> None:
    env_jx, params = make_jax_level(level)
    reset = jax.jit(env_jx.reset_env)
    seen: set[str] = set()
    for k in range(64):
        s = jax.tree_util.tree_map(np.asarray, reset(jax.random.PRNGKey(k), params)[1])
        grid, pos, d = s.grid, s.agent_pos, int(s.agent_dir)
        verb, kind, colour, loc, kind2, colour2 = s.mission
        assert grid[pos[0], pos[1], 0] == jg.EMPTY and s.time == 0 and s.carry[0] == jg.EMPTY
        front = grid[pos[0] + np.asarray(jg.DIR_TO_VEC)[d][0], pos[1] + np.asarray(jg.DIR_TO_VEC)[d][1], 0]
        assert front in (jg.EMPTY, jg.WALL)
        objs = _objects(grid)
        marked = np.argwhere(s.tgt & 1)
        assert len(marked) >= 1
        for x, y in marked:  # what the instruction refers to matches its description
            assert grid[x, y, 0] == kind and (colour < 0 or grid[x, y, 1] == colour)
        if level == "BabyAI-OpenTwoDoors-v0":
            (x2, y2), = np.argwhere(s.tgt & 2)
            assert (grid[x2, y2, 0], grid[x2, y2, 1]) == (kind2, colour2) and colour != colour2
            assert len(objs) == 2 and sorted(objs[:, 0]) == [5, 10] and all(5 < y < 10 for y in objs[:, 1])
        elif level in ("BabyAI-OpenDoor-v0", "BabyAI-OpenDoorColor-v0"):
            assert len(objs) == 4 and len(set(grid[objs[:, 0], objs[:, 1], 1])) == 4
            assert all(grid[x, y, 2] == jg.CLOSED for x, y in objs) and (loc > 0) != (colour >= 0)
            if colour >= 0:  # by colour: the door on the right wall
                assert marked.tolist() == [[14, marked[0][1]]]
            assert colour >= 0 or level == "BabyAI-OpenDoor-v0"
        else:
            n = {"BabyAI-GoToObj-v0": 1, "BabyAI-GoToRedBall-v0": 8}.get(level, 8)
            assert grid.shape[:2] == (8, 8) and len(objs) == n and kind2 == -1
            centre = np.array([4, 4]) if level == "BabyAI-PickupLoc-v0" else pos
            assert np.all(np.abs(objs - centre).sum(1) >= 2)  # reject_next_to
            if level != "BabyAI-PickupLoc-v0":  # go to: every object of the kind and colour counts
                same = (grid[..., 0] == kind) & (grid[..., 1] == colour)
                assert np.array_equal(same, (s.tgt & 1) > 0) and verb == jg.GOTO and loc == 0
        if level == "BabyAI-GoToRedBall-v0":
            assert (kind, colour) == (jg.BALL, 0)
        if level == "BabyAI-PickupLoc-v0":  # marks = the objects the description (and location) picks
            v = objs - pos
            ahead, side = v @ np.asarray(jg.DIR_TO_VEC)[d], v @ np.array([-jg.DIR_TO_VEC[d][1], jg.DIR_TO_VEC[d][0]])
            at = {0: True, 1: ahead > 0, 2: ahead < 0, 3: side < 0, 4: side > 0}[int(loc)]
            want = (grid[objs[:, 0], objs[:, 1], 0] == kind) & ((colour < 0) | (grid[objs[:, 0], objs[:, 1], 1] == colour)) & at
            assert sorted(map(tuple, objs[want])) == sorted(map(tuple, marked)) and verb == jg.PICK
        seen.update({f"loc{int(loc > 0)}", f"colour{int(colour >= 0)}"})
    if level in ("BabyAI-PickupLoc-v0", "BabyAI-OpenDoor-v0"):  # both kinds of descriptions occur
        assert {"loc0", "loc1", "colour0", "colour1"} <= seen, seen


def _bfs_reachable(grid: np.ndarray, pos: np.ndarray) -> bool:
    """minigrid's `check_objs_reachable`, transcribed."""
    w, h = grid.shape[:2]
    seen, stack = set(), [tuple(pos)]
    while stack:
        i, j = stack.pop()
        if not (0 <= i < w and 0 <= j < h) or (i, j) in seen:
            continue
        seen.add((i, j))
        if grid[i, j, 0] in (jg.EMPTY, jg.DOOR):
            stack += [(i + 1, j), (i - 1, j), (i, j + 1), (i, j - 1)]
    return all((i, j) in seen for i in range(w) for j in range(h) if grid[i, j, 0] not in (jg.EMPTY, jg.WALL))


def test_reachability_check_is_minigrids() -> None:
    from grace.tasks.babyai.jax_layout import objects_reachable

    env_jx, _ = make_jax_level("PickupLoc")
    states = jax.jit(jax.vmap(env_jx.layout))(jax.random.split(jax.random.PRNGKey(0), 500))
    got = np.asarray(jax.jit(jax.vmap(objects_reachable))(states.grid, states.agent_pos))
    grids, poss = np.asarray(states.grid), np.asarray(states.agent_pos)
    want = np.array([_bfs_reachable(grids[k], poss[k]) for k in range(500)])
    assert np.array_equal(got, want) and 0 < want.mean() < 1
