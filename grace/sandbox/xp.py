"""The curated array namespace `xp` injected into reward programs.

Reward code never sees a module: `xp` is a small object whose attributes are the allow-listed
names of `sandbox/policy.toml` (`xp.abs`, `xp.sum`, `xp.linalg.norm`, `xp.pi`, ...). Every
function is wrapped in an `XPFunction`, a slotted callable that exposes nothing but `__call__`
(and the sandbox's attribute guard refuses every attribute of it anyway), refuses keyword
arguments outside the policy (`out=`, `like=`, ...) and object dtypes (numpy ufuncs on object
arrays call methods of the elements).

- `XP_NUMPY`: numpy-backed, used by the sandbox workers.
- `make_xp_jax()`: the same names backed by jax.numpy (jax is imported lazily), for traced use
  inside PPO (`jax.jit`, `jax.vmap`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from grace.sandbox.policy import load_policy

_NUMERIC_KINDS = frozenset("biuf")


class XPFunction:
    """One allow-listed array function. Calls the backend; refuses unsafe arguments."""

    __slots__ = ("_name", "_fn", "_kwargs", "_numpy")

    def __init__(self, name: str, fn: Callable[..., Any], kwargs: frozenset[str], numpy: bool):
        self._name = name
        self._fn = fn
        self._kwargs = kwargs
        self._numpy = numpy

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        for key, value in kwargs.items():
            if key not in self._kwargs:
                raise TypeError(f"xp.{self._name}() does not accept the keyword argument {key!r}")
            if key == "dtype" and value is not None:
                _check_dtype(self._name, value)
        if self._numpy:
            for arg in args:
                _check_arg(self._name, arg, 0)
        out = self._fn(*args, **kwargs)
        if self._numpy and isinstance(out, np.ndarray) and out.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"xp.{self._name}() produced a non-numeric array ({out.dtype})")
        return out

    def __repr__(self) -> str:
        return f"<xp.{self._name}>"


def _check_dtype(name: str, value: Any) -> None:
    try:
        kind = np.dtype(value).kind
    except TypeError:
        kind = "?"
    if kind not in _NUMERIC_KINDS:
        raise TypeError(f"xp.{name}(): dtype must be a numeric type, got {value!r}")


def _check_arg(name: str, arg: Any, depth: int) -> None:
    """Only numbers, numeric arrays and (nested) lists/tuples of them reach numpy."""
    if isinstance(arg, (bool, int, float, np.generic)) or arg is None:
        if isinstance(arg, np.generic) and arg.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"xp.{name}(): non-numeric scalar {type(arg).__name__}")
        return
    if isinstance(arg, np.ndarray):
        if arg.dtype.kind not in _NUMERIC_KINDS:
            raise TypeError(f"xp.{name}(): arrays must be numeric, got dtype {arg.dtype}")
        return
    if isinstance(arg, (list, tuple)) and depth < 8:
        for item in arg:
            _check_arg(name, item, depth + 1)
        return
    if isinstance(arg, XPFunction) or callable(arg):
        raise TypeError(f"xp.{name}(): functions cannot be passed as array arguments")
    if type(arg).__name__ in ("ArrayImpl", "Array") or hasattr(type(arg), "__jax_array__"):
        return  # a concrete jax array handed to the numpy namespace: numeric by construction
    raise TypeError(f"xp.{name}(): unsupported argument of type {type(arg).__name__}")


class XPNamespace:
    """A read-only bag of allow-listed names (`xp.abs`, `xp.linalg.norm`, `xp.pi`)."""

    __slots__ = ("_names", "_label")

    def __init__(self, names: dict[str, Any], label: str = "xp") -> None:
        object.__setattr__(self, "_names", dict(names))
        object.__setattr__(self, "_label", label)

    def __getattr__(self, name: str) -> Any:
        names = object.__getattribute__(self, "_names")
        if name in names:
            return names[name]
        label = object.__getattribute__(self, "_label")
        raise AttributeError(f"{label} has no function {name!r}; available: {', '.join(sorted(names))}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("xp is read-only")

    def __dir__(self) -> list[str]:
        return sorted(object.__getattribute__(self, "_names"))

    def __contains__(self, name: str) -> bool:
        return name in object.__getattribute__(self, "_names")

    def __repr__(self) -> str:
        return f"<{object.__getattribute__(self, '_label')} namespace>"


_SAME_NAMES = (
    "abs sqrt exp exp2 expm1 log log1p log2 log10 tanh sinh cosh sin cos tan arcsin arccos "
    "arctan arctan2 hypot square sign floor ceil round power mod clip where minimum maximum sum "
    "mean std var max min prod cumsum argmax argmin any all dot matmul outer stack concatenate "
    "reshape expand_dims squeeze zeros_like ones_like full_like asarray logical_and logical_or "
    "logical_not isfinite isnan"
).split()
"""Names that numpy and jax.numpy both provide under the same name and meaning."""


def _numpy_table() -> dict[str, Any]:
    def sigmoid(x: Any) -> Any:
        return 0.5 * (np.tanh(0.5 * np.asarray(x, dtype=float)) + 1.0)

    table: dict[str, Any] = {name: getattr(np, name) for name in _SAME_NAMES}
    table["sigmoid"] = sigmoid
    table["linalg_norm"] = np.linalg.norm
    table["linalg.norm"] = np.linalg.norm
    return table


def _jax_table() -> dict[str, Any]:
    import jax
    import jax.numpy as jnp

    table: dict[str, Any] = {name: getattr(jnp, name) for name in _SAME_NAMES}
    table["sigmoid"] = jax.nn.sigmoid
    table["linalg_norm"] = jnp.linalg.norm
    table["linalg.norm"] = jnp.linalg.norm
    return table


def _build(table: dict[str, Any], numpy: bool, float32: Any, label: str) -> XPNamespace:
    policy = load_policy()
    kwargs = policy.xp_kwargs
    constants: dict[str, Any] = {"pi": float(np.pi), "e": float(np.e), "inf": float("inf"),
                                 "newaxis": None, "float32": float32}
    names: dict[str, Any] = {}
    for name in sorted(policy.xp_names - {"linalg"}):
        if name in constants:
            names[name] = constants[name]
        elif name in table:
            names[name] = XPFunction(name, table[name], kwargs, numpy)
        else:
            raise RuntimeError(f"policy lists xp.{name} but grace.sandbox.xp does not implement it")
    linalg = {n: XPFunction(f"linalg.{n}", table[f"linalg.{n}"], kwargs, numpy)
              for n in sorted(policy.xp_linalg)}
    if "linalg" in policy.xp_names:
        names["linalg"] = XPNamespace(linalg, f"{label}.linalg")
    return XPNamespace(names, label)


XP_NUMPY: XPNamespace = _build(_numpy_table(), True, np.float32, "xp")
"""The numpy-backed namespace (sandbox workers, `grace eval`)."""

_XP_JAX: XPNamespace | None = None


def make_xp_jax() -> XPNamespace:
    """The jax.numpy-backed namespace with the same names (imports jax on first use)."""
    global _XP_JAX
    if _XP_JAX is None:
        import jax.numpy as jnp

        _XP_JAX = _build(_jax_table(), False, jnp.float32, "xp")
    return _XP_JAX


def get_xp(backend: str) -> XPNamespace:
    """`"numpy"` -> XP_NUMPY, `"jax"` -> make_xp_jax()."""
    if backend == "numpy":
        return XP_NUMPY
    if backend == "jax":
        return make_xp_jax()
    raise ValueError(f"unknown xp backend {backend!r}; use 'numpy' or 'jax'")
