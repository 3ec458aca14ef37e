"""The curated array namespace: same names on numpy and jax, safe arguments, jit/vmap."""

from __future__ import annotations

import types

import numpy as np
import pytest

from grace.sandbox.compile import compile_reward
from grace.sandbox.policy import load_policy
from grace.sandbox.xp import XP_NUMPY, XPFunction, XPNamespace, get_xp
from grace.tasks.spec import Field, ObsSchema

SCHEMA = ObsSchema((Field("x"), Field("v"), Field("q", size=3)))
REWARD = '''PARAMS = {"w": 0.5}


def reward(s, a, s_next, p):
    dist = xp.linalg.norm(s_next.q, axis=-1)
    smooth = xp.sigmoid(s_next.v) * xp.clip(s_next.x, -1.0, 1.0)
    reach = xp.where(dist < 1.0, 1.0, 0.0) + xp.mean(xp.square(s_next.q), axis=-1)
    angle = xp.arctan2(xp.sin(s_next.x), xp.cos(s_next.x)) + xp.sum(s.raw, axis=-1) * 0
    total = reach - p["w"] * smooth + 0.01 * angle + xp.maximum(dist, xp.pi) * 0.0
    return total, {"reach": reach, "smooth": smooth}
'''


def test_policy_names_all_exist():
    policy = load_policy()
    for name in policy.xp_names:
        assert name in XP_NUMPY, name
    assert isinstance(XP_NUMPY.linalg, XPNamespace) and isinstance(XP_NUMPY.linalg.norm, XPFunction)
    assert XP_NUMPY.pi == pytest.approx(np.pi) and XP_NUMPY.newaxis is None


def test_no_module_or_python_function_leaks():
    for name in dir(XP_NUMPY):
        value = getattr(XP_NUMPY, name)
        assert not isinstance(value, (types.ModuleType, types.FunctionType)), name
    fn = XP_NUMPY.abs
    assert not hasattr(fn, "__dict__") and not hasattr(fn, "__globals__")
    with pytest.raises(AttributeError):
        XP_NUMPY.save  # noqa: B018
    with pytest.raises(AttributeError):
        XP_NUMPY.abs = None


def test_numpy_semantics():
    x = np.array([[3.0, 4.0], [-1.0, 0.0]])
    np.testing.assert_allclose(XP_NUMPY.linalg_norm(x, axis=-1), [5.0, 1.0])
    np.testing.assert_allclose(XP_NUMPY.sum(x, axis=-1, keepdims=True), [[7.0], [-1.0]])
    np.testing.assert_allclose(XP_NUMPY.sigmoid(np.array([0.0, 1000.0, -1000.0])), [0.5, 1.0, 0.0])
    assert XP_NUMPY.asarray([1, 2], dtype=XP_NUMPY.float32).dtype == np.float32


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda xp: xp.abs(np.ones(3), out=np.ones(3)), "keyword argument 'out'"),
        (lambda xp: xp.asarray([1], like=np.ones(1)), "keyword argument 'like'"),
        (lambda xp: xp.asarray([1.0], dtype=object), "numeric type"),
        (lambda xp: xp.asarray([1.0], dtype="U3"), "numeric type"),
        (lambda xp: xp.sin([object()]), "unsupported argument"),
        (lambda xp: xp.asarray(["a"]), "unsupported argument"),
        (lambda xp: xp.sum(np.array([None])), "numeric"),
        (lambda xp: xp.stack([xp.abs]), "functions cannot"),
    ],
)
def test_unsafe_arguments_refused(call, match):
    with pytest.raises(TypeError, match=match):
        call(XP_NUMPY)


def test_get_xp_unknown():
    with pytest.raises(ValueError):
        get_xp("torch")


jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")


def test_jax_namespace_has_same_names():
    xpj = get_xp("jax")
    assert dir(xpj) == dir(XP_NUMPY)
    assert dir(xpj.linalg) == dir(XP_NUMPY.linalg)


def _data(n: int = 16):
    rng = np.random.default_rng(1)
    s = rng.normal(size=(n, 5)).astype(np.float32)
    return s, rng.integers(0, 2, n), (s + 0.1).astype(np.float32)


def test_same_program_numpy_and_jax_jit_vmap():
    s, a, s2 = _data()
    ref, comps = compile_reward(REWARD, SCHEMA, "numpy")(s, a, s2)
    prog = compile_reward(REWARD, SCHEMA, "jax")

    total, jcomps = prog(jnp.asarray(s), jnp.asarray(a), jnp.asarray(s2))
    assert total.dtype == jnp.float32 and total.shape == (16,)
    np.testing.assert_allclose(np.asarray(total), ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(jcomps["reach"]), comps["reach"], rtol=1e-5)

    jitted = jax.jit(lambda s, a, s2, w: prog(s, a, s2, {"w": w})[0])
    np.testing.assert_allclose(np.asarray(jitted(s, a, s2, 0.5)), ref, rtol=1e-5, atol=1e-5)

    per_row = jax.vmap(lambda s, a, s2: prog(s, a, s2)[0])  # no batch axis inside: axis=-1
    out = per_row(jnp.asarray(s), jnp.asarray(a), jnp.asarray(s2))
    assert out.shape == (16,)
    np.testing.assert_allclose(np.asarray(out), ref, rtol=1e-5, atol=1e-5)


def test_jax_constant_reward_broadcasts_under_vmap():
    prog = compile_reward("def reward(s, a, s_next, p):\n    return 1.0\n", SCHEMA, "jax")
    s, a, s2 = _data(4)
    out = jax.vmap(lambda s, a, s2: prog(s, a, s2)[0])(s, a, s2)
    assert out.shape == (4,) and float(out.sum()) == 4.0


def test_guard_applies_to_jax_arrays():
    src = "def reward(s, a, s_next, p):\n    return xp.sum(s.raw, axis=-1) * 0 + s.raw.shape[0]\n"
    s, a, s2 = _data(4)
    total, _ = compile_reward(src, SCHEMA, "jax")(s, a, s2)
    assert float(total[0]) == 4.0
    bad = "def reward(s, a, s_next, p):\n    return xp.abs.shape\n"
    from grace.sandbox.errors import SandboxError

    with pytest.raises(SandboxError, match="not allowed"):
        compile_reward(bad, SCHEMA, "jax")(s, a, s2)
