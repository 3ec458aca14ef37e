"""Restricted compilation of reward programs (in-process layer of the sandbox).

`compile_reward(source, schema)` checks a reward program against the policy
(`sandbox/policy.toml`), compiles it with RestrictedPython and runs its module body in a
namespace holding only allow-listed builtins, the curated `xp` and the guards. Every attribute
read goes through `guarded_getattr`, an allow-list per kind of object (view fields and `raw`,
a few array attributes, xp names, a few dict/list/str methods); item and attribute writes go
through `guarded_write` (dicts, lists and writable arrays only; never attributes).

This layer is not the whole sandbox: programs from untrusted sources run inside the worker
processes of `grace.sandbox_pool.SandboxPool`, which add OS limits, timeouts and a hard kill.
"""

from __future__ import annotations

import ast
import operator
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.PrintCollector import PrintCollector

from grace.sandbox_policy import Policy, load_policy
from grace.tasks.schema import ObsSchema
from grace.views import ObsView, view
from grace.xp import XPFunction, XPNamespace, get_xp

FILENAME = "<reward>"
ERROR_KINDS = ("syntax", "forbidden", "timeout", "memory", "runtime", "bad_return", "crash")


class SandboxError(Exception):
    """A reward program failed. `kind` is one of ERROR_KINDS; str() is one readable line."""

    def __init__(self, kind: str, message: str, line: int | None = None) -> None:
        if kind not in ERROR_KINDS:
            raise ValueError(f"unknown sandbox error kind {kind!r}")
        super().__init__(kind, message, line)
        self.kind = kind
        self.message = message
        self.line = line

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line else ""
        return f"{self.kind}: {where}{self.message}"

    def __repr__(self) -> str:
        return f"SandboxError({self.kind!r}, {self.message!r}, line={self.line!r})"

    def to_tuple(self) -> tuple[str, str, int | None]:
        return (self.kind, self.message, self.line)


class SandboxUnavailable(RuntimeError):
    """The platform cannot run the sandbox (no POSIX `resource` module)."""


# ----------------------------------------------------------------------------- guards

def _is_array(obj: Any) -> bool:
    if isinstance(obj, (np.ndarray, np.generic)):
        return True
    jax = sys.modules.get("jax")
    return jax is not None and isinstance(obj, jax.Array)


def _attribute_kind(obj: Any) -> str | None:
    t = type(obj)
    if t is dict:
        return "dict"
    if t is list:
        return "list"
    if t is tuple:
        return "tuple"
    if t is str:
        return "str"
    if isinstance(obj, np.dtype):
        return "dtype"
    if _is_array(obj):
        return "array"
    return None


def make_getattr(policy: Policy, fields: frozenset[str]) -> Callable[..., Any]:
    """The `_getattr_` guard: an allow-list per kind of object."""
    attrs = policy.attributes
    view_names = fields | attrs["view"]

    def guarded_getattr(obj: Any, name: str, default: Any = None) -> Any:
        if type(name) is not str or name.startswith("_"):
            raise AttributeError(f"attribute {name!r} is not allowed")
        if type(obj) is ObsView:
            if name in view_names:
                return getattr(obj, name)
            raise AttributeError(
                f"observation has no field {name!r}; fields are: {', '.join(sorted(fields))}, raw")
        if type(obj) is XPNamespace:
            return getattr(obj, name)  # only allow-listed names exist on it
        kind = _attribute_kind(obj)
        if kind is not None and name in attrs[kind]:
            return getattr(obj, name)
        what = kind or type(obj).__name__
        raise AttributeError(f"attribute {name!r} is not allowed on {what} objects")

    return guarded_getattr


class _ArrayItemWriter:
    """What `_write_(array)` returns: item assignment only, on a writable array."""

    __slots__ = ("_arr",)

    def __init__(self, arr: np.ndarray) -> None:
        self._arr = arr

    def __setitem__(self, key: Any, value: Any) -> None:
        self._arr[key] = value

    def __delitem__(self, key: Any) -> None:
        raise TypeError("cannot delete array items")


def guarded_write(obj: Any) -> Any:
    """The `_write_` guard: `d[k] = v` on dicts/lists, `arr[i] = v` on writable arrays."""
    t = type(obj)
    if t is dict or t is list:
        return obj
    if t is np.ndarray:
        if not obj.flags.writeable:
            raise TypeError("this array is read-only (input data); copy it first, e.g. x * 1.0")
        return _ArrayItemWriter(obj)
    raise TypeError(f"cannot modify {t.__name__} objects (attribute or item assignment)")


def guarded_getitem(obj: Any, key: Any) -> Any:
    return obj[key]


def guarded_getiter(obj: Any) -> Any:
    return iter(obj)


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.add, "-=": operator.sub, "*=": operator.mul, "/=": operator.truediv,
    "//=": operator.floordiv, "%=": operator.mod, "**=": operator.pow, "@=": operator.matmul,
    "&=": operator.and_, "|=": operator.or_, "^=": operator.xor,
    "<<=": operator.lshift, ">>=": operator.rshift,
}


def guarded_inplacevar(op: str, x: Any, y: Any) -> Any:
    """`x += y` means `x = x + y` (never mutates the left operand in place)."""
    return _INPLACE[op](x, y)


def _apply(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _safe_builtins(policy: Policy) -> dict[str, Any]:
    import builtins

    out = {name: getattr(builtins, name) for name in policy.builtins if name != "print"}
    return out


# ----------------------------------------------------------------------------- static checks

class _PolicyCheck(ast.NodeVisitor):
    """Policy checks run before RestrictedPython, with messages a proposer can act on."""

    def __init__(self, policy: Policy, fields: frozenset[str]) -> None:
        self.policy = policy
        self.attrs = policy.all_attributes | fields
        self.errors: list[SandboxError] = []

    def fail(self, node: ast.AST, message: str) -> None:
        self.errors.append(SandboxError("forbidden", message, getattr(node, "lineno", None)))

    def visit_Import(self, node: ast.AST) -> None:
        self.fail(node, "import statements are not allowed (use the injected `xp` namespace)")

    visit_ImportFrom = visit_Import

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.fail(node, "class definitions are not allowed; use functions")

    def _async(self, node: ast.AST) -> None:
        self.fail(node, "async code is not allowed")

    visit_AsyncFunctionDef = visit_Await = visit_AsyncFor = visit_AsyncWith = _async

    def visit_TryStar(self, node: ast.AST) -> None:
        self.fail(node, "try/except* is not allowed")

    def visit_Global(self, node: ast.Global) -> None:
        self.fail(node, "global statements are not allowed; return values instead")

    visit_Nonlocal = visit_Global

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in self.policy.forbidden_names or node.id.startswith("__"):
            self.fail(node, f"the name {node.id!r} is not allowed in reward programs")

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if node.attr.startswith("_"):
            self.fail(node, f"attribute {node.attr!r} is not allowed (names starting with '_' "
                            "are private)")
        elif node.attr not in self.attrs:
            self.fail(node, f"attribute {node.attr!r} is not allowed; allowed are the "
                            "observation fields, .raw, xp functions, .shape/.ndim/.size/.T on "
                            "arrays and .get/.items/.keys/.values on dicts")
        if isinstance(node.ctx, (ast.Store, ast.Del)):
            self.fail(node, f"assigning attributes ({node.attr!r}) is not allowed")
        self.generic_visit(node)

    def visit_JoinedStr(self, node: ast.JoinedStr) -> None:
        for value in node.values:
            if isinstance(value, ast.FormattedValue) and value.format_spec is not None:
                self.visit(value.format_spec)
        self.generic_visit(node)

    def visit_arg(self, node: ast.arg) -> None:
        if node.arg.startswith("_"):
            self.fail(node, f"argument name {node.arg!r} is not allowed (starts with '_')")


_RP_LINE = re.compile(r"^Line (\d+): (.*)$")


def _static_check(source: str, policy: Policy, fields: frozenset[str]) -> ast.Module:
    try:
        tree = ast.parse(source, FILENAME)
    except SyntaxError as e:
        raise SandboxError("syntax", e.msg, e.lineno) from None
    except (ValueError, MemoryError, RecursionError) as e:
        raise SandboxError("syntax", f"cannot parse the program: {e}") from None
    checker = _PolicyCheck(policy, fields)
    checker.visit(tree)
    if checker.errors:
        first = checker.errors[0]
        extra = f" (and {len(checker.errors) - 1} more)" if len(checker.errors) > 1 else ""
        raise SandboxError("forbidden", first.message + extra, first.line)
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    if "reward" not in defs:
        raise SandboxError("syntax", "the program defines no top-level function "
                                     "`reward(s, a, s_next, p)`")
    for name in ("reward", "debug"):
        if name in defs:
            args = defs[name].args
            if len(args.posonlyargs) + len(args.args) != 4 or args.vararg or args.kwonlyargs:
                raise SandboxError("syntax", f"`{name}` must take exactly four arguments "
                                             "(s, a, s_next, p)", defs[name].lineno)
    return tree


@dataclass
class _Compiled:
    code: Any
    has_debug: bool


_CODE_CACHE: dict[tuple[str, frozenset[str]], _Compiled] = {}


def _compile(source: str, policy: Policy, fields: frozenset[str]) -> _Compiled:
    key = (source, fields)
    hit = _CODE_CACHE.get(key)
    if hit is not None:
        return hit
    tree = _static_check(source, policy, fields)
    result = compile_restricted_exec(source, FILENAME)
    if result.errors or result.code is None:
        msg = result.errors[0] if result.errors else "compilation failed"
        m = _RP_LINE.match(msg)
        line = int(m.group(1)) if m else None
        raise SandboxError("forbidden", m.group(2) if m else msg, line)
    has_debug = any(isinstance(n, ast.FunctionDef) and n.name == "debug" for n in tree.body)
    if len(_CODE_CACHE) > 256:
        _CODE_CACHE.clear()
    compiled = _Compiled(result.code, has_debug)
    _CODE_CACHE[key] = compiled
    return compiled


# ----------------------------------------------------------------------------- errors at run time

def program_line(tb: Any) -> int | None:
    """The last line of the reward program in a traceback, if any."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == FILENAME:
            line = lineno
    return line


def error_from_exception(exc: BaseException) -> SandboxError:
    """Map an exception raised while running a program to a SandboxError."""
    if isinstance(exc, SandboxError):
        return exc
    line = program_line(exc.__traceback__)
    if isinstance(exc, MemoryError):
        return SandboxError("memory", f"out of memory ({type(exc).__name__}: {exc})"[:500], line)
    if isinstance(exc, RecursionError):
        return SandboxError("runtime", "RecursionError: maximum recursion depth exceeded", line)
    text = f"{type(exc).__name__}: {exc}"
    if len(text) > 500:
        text = text[:500] + "..."
    return SandboxError("runtime", text, line)


# ----------------------------------------------------------------------------- results

def _as_batch(name: str, value: Any, batch: int) -> np.ndarray:
    try:
        arr = np.asarray(value)
    except Exception as e:  # noqa: BLE001 - any conversion failure is the program's fault
        raise SandboxError("bad_return", f"{name} is not an array ({type(value).__name__}): {e}") from None
    if arr.dtype.kind not in "biuf":
        raise SandboxError("bad_return", f"{name} must be numeric, got dtype {arr.dtype} "
                                         f"({type(value).__name__})")
    try:
        shape = np.broadcast_shapes(arr.shape, (batch,))
    except ValueError:
        shape = None
    if shape != (batch,):
        raise SandboxError("bad_return", f"{name} has shape {arr.shape}; it must be a scalar or "
                                         f"have shape ({batch},) (one value per transition)")
    arr = arr.astype(np.float64, copy=False)
    if not np.isfinite(np.add.reduce(arr, axis=None)):  # fast path: NaN/inf propagate to the sum
        bad = ~np.isfinite(arr)
        if bad.any():
            n_nan = int(np.isnan(arr).sum())
            n_inf = int(bad.sum()) - n_nan
            raise SandboxError("bad_return", f"{name} has non-finite values: {n_nan} NaN and "
                                             f"{n_inf} inf out of {arr.size}")
    if arr.shape == (batch,):
        return arr
    return np.array(np.broadcast_to(arr, (batch,)))


def check_result(total: Any, components: Any, batch: int,
                 max_components: int = 64) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate a program's return: total and components broadcast to (batch,), all finite.

    A scalar total (constant reward) is broadcast. Returns float64 arrays of shape (batch,).
    """
    out_total = _as_batch("the total reward", total, batch)
    if components is None:
        return out_total, {}
    if type(components) is not dict:
        raise SandboxError("bad_return", "components must be a dict of name -> array, got "
                                         f"{type(components).__name__}")
    if len(components) > max_components:
        raise SandboxError("bad_return", f"too many components ({len(components)} > {max_components})")
    out: dict[str, np.ndarray] = {}
    for key, value in components.items():
        if type(key) is not str or not key or len(key) > 100:
            raise SandboxError("bad_return", f"component names must be short strings, got {key!r:.60}")
        out[key] = _as_batch(f"component {key!r}", value, batch)
    return out_total, out


def split_return(result: Any) -> tuple[Any, Any]:
    """`total` or `(total, components)` -> (total, components or None)."""
    if type(result) is tuple:
        if len(result) == 2 and (type(result[1]) is dict or result[1] is None):
            return result[0], result[1]
        raise SandboxError("bad_return", f"reward returned a tuple of {len(result)} items; return "
                                         "the total or (total, components_dict)")
    if result is None:
        raise SandboxError("bad_return", "reward returned None; return the total reward")
    return result, None


def _readonly(x: Any) -> Any:
    if isinstance(x, np.ndarray) and x.flags.writeable:
        x = x.view()
        x.flags.writeable = False
    return x


# ----------------------------------------------------------------------------- compiled programs

class CompiledReward:
    """A compiled reward program bound to a schema and a backend ("numpy" or "jax")."""

    def __init__(self, source: str, schema: ObsSchema, backend: str = "numpy",
                 policy: Policy | None = None, debug_chars: int = 20000) -> None:
        self.source = source
        self.schema = schema
        self.backend = backend
        self.policy = policy or load_policy()
        self.debug_chars = debug_chars
        fields = frozenset(schema.names)
        compiled = _compile(source, self.policy, fields)
        self.has_debug = compiled.has_debug
        self._getattr = make_getattr(self.policy, fields)
        glb: dict[str, Any] = {
            "__builtins__": _safe_builtins(self.policy),
            "__name__": "reward_program",
            "xp": get_xp(backend),
            "_getattr_": self._getattr,
            "_getitem_": guarded_getitem,
            "_getiter_": guarded_getiter,
            "_write_": guarded_write,
            "_inplacevar_": guarded_inplacevar,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_apply_": _apply,
            "_print_": PrintCollector,
        }
        try:
            with np.errstate(all="ignore"):
                exec(compiled.code, glb)  # noqa: S102 - restricted code, guarded namespace
        except Exception as e:  # noqa: BLE001
            raise error_from_exception(e) from None
        self._reward = glb.get("reward")
        self._debug = glb.get("debug") if self.has_debug else None
        if not callable(self._reward):
            raise SandboxError("syntax", "`reward` is not a function")
        params = glb.get("PARAMS", {})
        if type(params) is not dict or not all(
                type(k) is str and type(v) in (int, float) for k, v in params.items()):
            raise SandboxError("bad_return", "PARAMS must be a dict of name -> number")
        self.params: dict[str, float] = {k: float(v) for k, v in params.items()}

    def _args(self, s_raw: Any, a: Any, s_next_raw: Any, params: Mapping[str, float] | None
              ) -> tuple[Any, Any, Any, dict[str, Any]]:
        p = dict(self.params)
        if params:
            p.update(params)
        if self.backend == "numpy":
            s_raw, a, s_next_raw = _readonly(s_raw), _readonly(a), _readonly(s_next_raw)
        return view(s_raw, self.schema), a, view(s_next_raw, self.schema), p

    def raw_call(self, s_raw: Any, a: Any, s_next_raw: Any,
                 params: Mapping[str, float] | None = None) -> tuple[Any, Any]:
        """Run `reward` and split its return, without checks (traceable under jax)."""
        args = self._args(s_raw, a, s_next_raw, params)
        try:
            result = self._reward(*args)
        except SandboxError:
            raise
        except Exception as e:  # noqa: BLE001
            raise error_from_exception(e) from None
        return split_return(result)

    def __call__(self, s_raw: Any, a: Any, s_next_raw: Any,
                 params: Mapping[str, float] | None = None) -> tuple[Any, dict[str, Any]]:
        """Score a batch. numpy: checked float64 arrays of shape (B,) (raises SandboxError).

        jax: the total cast to float32 and broadcast to the batch shape (works under jit/vmap;
        no value checks are possible on traced arrays); components as returned.
        """
        if self.backend == "jax":
            import jax.numpy as jnp

            total, comps = self.raw_call(s_raw, a, s_next_raw, params)
            batch_shape = jnp.shape(s_next_raw)[:-1]
            return jnp.broadcast_to(jnp.asarray(total, jnp.float32), batch_shape), comps or {}
        with np.errstate(all="ignore"):
            total, comps = self.raw_call(s_raw, a, s_next_raw, params)
            batch = int(np.shape(s_next_raw)[0])
            return check_result(total, comps, batch)

    def debug(self, s_raw: Any, a: Any, s_next_raw: Any,
              params: Mapping[str, float] | None = None) -> str | None:
        """Run the optional `debug` function; its output is converted to str and capped."""
        if self._debug is None:
            return None
        args = self._args(s_raw, a, s_next_raw, params)
        try:
            with np.errstate(all="ignore"):
                out = self._debug(*args)
            text = out if type(out) is str else str(out)
        except Exception as e:  # noqa: BLE001
            raise error_from_exception(e) from None
        if len(text) > self.debug_chars:
            text = text[: self.debug_chars] + f"\n... [debug output truncated: {len(text)} chars]"
        return text


def compile_reward(source: str, schema: ObsSchema, backend: str = "numpy",
                   debug_chars: int = 20000) -> CompiledReward:
    """Compile a reward program (raises SandboxError: syntax, forbidden, runtime...)."""
    return CompiledReward(source, schema, backend, debug_chars=debug_chars)


__all__ = [
    "ERROR_KINDS", "CompiledReward", "SandboxError", "SandboxUnavailable", "XPFunction",
    "check_result", "compile_reward", "error_from_exception", "guarded_write", "make_getattr",
    "split_return",
]


def __getattr__(name: str) -> Any:
    """Lazy re-exports: `from grace.sandbox import SandboxPool, Limits, Outcome`."""
    if name in ("SandboxPool", "Limits", "Outcome", "clean_env"):
        from grace import sandbox_pool

        return getattr(sandbox_pool, name)
    if name == "WorkerContext":
        from grace.sandbox_worker import WorkerContext

        return WorkerContext
    raise AttributeError(f"module 'grace.sandbox' has no attribute {name!r}")
