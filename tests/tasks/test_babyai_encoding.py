"""The BabyAI observation contract: grid fields, derived scalars and constants on views, the same
under numpy (sandbox) and jax (PPO, vmap), and the sandbox still refusing what it refused."""

from __future__ import annotations

import numpy as np
import pytest

from grace.program import ProgramError, RewardProgram
from grace.sandbox.compile import SandboxError, compile_reward
from grace.sandbox.views import view
from grace.tasks import Field, ObsSchema, SchemaError
from grace.tasks.babyai import encoding as enc
from grace.tasks.babyai.encoding import SCHEMA
from grace.tasks.spec import Derived


def _batch(n: int = 16, seed: int = 0) -> np.ndarray:
    """Random but well-formed observations: ids in range, a mission, the agent cell empty."""
    rng = np.random.default_rng(seed)
    out = np.zeros((n, enc.WIDTH), np.float32)
    img = np.stack([rng.integers(0, 11, (n, 7, 7)), rng.integers(0, 6, (n, 7, 7)),
                    rng.integers(0, 3, (n, 7, 7))], axis=-1)
    out[:, :147] = img.reshape(n, -1)
    out[:, enc.DIRECTION] = rng.integers(0, 4, n)
    out[:, enc.M_VERB] = 0
    out[:, enc.M_TYPE] = enc.OBJECTS["BALL"]
    out[:, enc.M_COLOR] = np.where(np.arange(n) % 3 == 0, -1, enc.COLORS["RED"])
    out[:, enc.M2_TYPE] = out[:, enc.M2_COLOR] = -1
    out[:, enc.STEP_FRAC] = rng.random(n)
    return out


def _expected(obs: np.ndarray) -> dict[str, np.ndarray]:
    """The derived scalars written out the slow, obvious way."""
    img = obs[:, :147].reshape(-1, 7, 7, 3)
    out: dict[str, list[float]] = {"front_is_target": [], "carrying_target": [], "target_dist": []}
    for row, im in zip(obs, img, strict=True):
        mt, mc = row[enc.M_TYPE], row[enc.M_COLOR]

        def match(cell, mt=mt, mc=mc):
            return cell[0] == mt and (mc < 0 or cell[1] == mc)

        out["front_is_target"].append(float(match(im[3, 5])))
        out["carrying_target"].append(float(match(im[3, 6])))
        dists = [abs(i - 3) + (6 - j) for i in range(7) for j in range(7) if match(im[i, j])]
        out["target_dist"].append(float(min(dists)) if dists else float(enc.NOT_VISIBLE))
    return {k: np.array(v) for k, v in out.items()}


def test_layout_is_the_shared_vector() -> None:
    assert SCHEMA.width == 155
    assert SCHEMA.names == ["image", "direction", "m_verb", "m_type", "m_color", "m_loc",
                            "m2_type", "m2_color", "step_frac"]
    assert SCHEMA.slices["image"] == slice(0, 147) and SCHEMA.slices["step_frac"] == slice(154, 155)
    # index = (i*7 + j)*3 + c: the front cell (3, 5) and the agent's cell (3, 6)
    assert enc.FRONT == 78 and enc.CARRY == 81


def test_constants_are_minigrids() -> None:
    constants = pytest.importorskip("minigrid.core.constants")
    assert {k.upper(): v for k, v in constants.OBJECT_TO_IDX.items()} == enc.OBJECTS
    assert {k.upper(): v for k, v in constants.COLOR_TO_IDX.items()} == enc.COLORS
    assert {k.upper(): v for k, v in constants.STATE_TO_IDX.items()} == enc.STATES


def test_numpy_views_give_grids_derived_scalars_and_constants() -> None:
    obs = _batch()
    s = view(obs, SCHEMA)
    assert s.image.shape == (16, 7, 7, 3)
    np.testing.assert_array_equal(s.image, obs[:, :147].reshape(16, 7, 7, 3))
    assert s.direction.shape == (16,)
    np.testing.assert_array_equal(s.front_type, s.image[:, 3, 5, 0])
    np.testing.assert_array_equal(s.carrying_color, s.image[:, 3, 6, 1])
    for name, want in _expected(obs).items():
        np.testing.assert_array_equal(getattr(s, name), want, err_msg=name)
    assert s.BALL == 6 and s.RED == 0 and s.OPEN == 0 and s.LOCKED == 2 and s.A_TOGGLE == 5
    one = view(obs[0], SCHEMA)  # without the batch axis (as under vmap)
    assert one.image.shape == (7, 7, 3) and np.ndim(one.target_dist) == 0


def test_jax_views_match_numpy_under_jit_and_vmap() -> None:
    jax = pytest.importorskip("jax")
    jnp = jax.numpy
    obs = _batch()
    names = [d.name for d in SCHEMA.derived]

    def derived(raw):
        s = view(raw, SCHEMA)
        return s.image, [getattr(s, n) for n in names]

    img, vals = jax.jit(derived)(jnp.asarray(obs))
    assert img.shape == (16, 7, 7, 3)
    vimg, vvals = jax.vmap(derived)(jnp.asarray(obs))
    want = SCHEMA.derived_values(obs)
    for n, a, b in zip(names, vals, vvals, strict=True):
        np.testing.assert_allclose(np.asarray(a), want[n], err_msg=n)
        np.testing.assert_allclose(np.asarray(b), want[n], err_msg=n)
    np.testing.assert_array_equal(np.asarray(vimg), np.asarray(img))


REWARD = '''"""Face the mission's object; red balls in view count."""

PARAMS = {"w": 1.0}


def reward(s, a, s_next, p):
    red_balls = xp.sum((s_next.image[..., 0] == s.BALL) & (s_next.image[..., 1] == s.RED), axis=(-2, -1))
    toggled = xp.where(a == s.A_TOGGLE, 1.0, 0.0)
    return p["w"] * s_next.front_is_target + 0.1 * red_balls - 0.01 * s_next.target_dist + toggled
'''


def test_reward_code_reads_the_grid_the_same_in_numpy_and_jax() -> None:
    jax = pytest.importorskip("jax")
    obs = _batch()
    a = np.arange(16) % 7
    r_np, _ = compile_reward(REWARD, SCHEMA)(obs, a, obs)
    fn = compile_reward(REWARD, SCHEMA, backend="jax")
    r_jax, _ = jax.jit(lambda s, a, t: fn(s, a, t))(obs, a, obs)
    one = jax.vmap(lambda s, a, t: fn.raw_call(s, a, t)[0])(obs, a, obs)
    np.testing.assert_allclose(np.asarray(r_jax), r_np, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(one), r_np, rtol=1e-5)


@pytest.mark.parametrize("body", [
    "s_next.front_is_target.__class__",   # dunder on a derived value
    "s_next._index",                      # the view's private table (and the derived functions in it)
    "s_next.BALL.real",                   # attributes of a constant (an int)
    "xp.BALL",                            # constants live on views only
    "s.front_type.fn",                    # not an array attribute
    "p.front_type",                       # view names are allowed on views only (run-time guard)
    "a.BALL",
])
def test_sandbox_refuses_new_surface(body: str) -> None:
    src = f'def reward(s, a, s_next, p):\n    x = {body}\n    return s_next.step_frac\n'
    obs = _batch(4)
    with pytest.raises((SandboxError, ProgramError)):
        compile_reward(src, SCHEMA)(obs, np.zeros(4, np.int64), obs)


def test_unknown_view_names_are_refused_by_the_contract() -> None:
    src = "def reward(s, a, s_next, p):\n    return s_next.front_is_ball + s.BLACK\n"
    with pytest.raises(ProgramError, match="unknown observation field"):
        RewardProgram(src).validate(SCHEMA)


def test_schema_checks_grid_shapes_names_and_constants() -> None:
    with pytest.raises(SchemaError, match="does not hold"):
        Field("g", 10, shape=(3, 3))
    with pytest.raises(SchemaError, match="kind"):
        Field("g", 9, shape=(3, 3), kind="ordinal")
    with pytest.raises(SchemaError, match="duplicated or reserved"):
        ObsSchema((Field("x"),), derived=(Derived("x", enc.front_type),))
    with pytest.raises(SchemaError, match="UPPER_CASE"):
        ObsSchema((Field("x"),), constants=(("ball", 6),))
    with pytest.raises(SchemaError, match="UPPER_CASE"):
        ObsSchema((Field("x"),), constants=(("BALL", 6.5),))


def test_states_shown_to_proposers_carry_the_grid_and_the_derived_scalars() -> None:
    obs = _batch(2)
    st = SCHEMA.state_dict(obs[0], digits=4)
    assert np.asarray(st["image"]).shape == (7, 7, 3)
    assert st["target_dist"] == _expected(obs)["target_dist"][0]
    assert "front_is_target" in SCHEMA.describe() and "BALL=6" in SCHEMA.describe()


def test_export_computes_the_same_grid_reward(tmp_path) -> None:
    from grace.export import export_program
    from grace.tasks import get_task
    from tests.test_export import load_module

    task = get_task("BabyAI-GoToRedBall-v0")
    program = RewardProgram(REWARD)
    path = tmp_path / "babyai_reward.py"
    path.write_text(export_program(program, task, "module"))
    module = load_module(path, "babyai_reward")
    obs, a = _batch(), np.arange(16) % 7
    want, _ = compile_reward(REWARD, SCHEMA)(obs, a, obs)
    got, _ = module.reward_and_components(obs, a, obs)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    s = module.Obs(obs)
    for d in SCHEMA.derived:
        np.testing.assert_array_equal(getattr(s, d.name), d.fn(obs), err_msg=d.name)
    assert s.image.shape == (16, 7, 7, 3) and s.BALL == 6
