"""Guards and the static security policy for restricted reward programs.

- The policy check (`policy_check`) runs on the AST before RestrictedPython: imports, classes,
  async code, try/except*, `global`, forbidden names and every attribute name outside the
  policy's allow-lists are refused with a readable "forbidden: line N: ..." error. The reward
  contract itself (reward/debug signatures, PARAMS, module-level statements, schema fields) is
  checked by THE contract validator, `grace.program.RewardProgram.validate`, not here.
- Run-time guards (`_getattr_`, `_write_`, `_inplacevar_`, ...) are what the RestrictedPython
  rewrite calls: attribute reads are allow-listed per kind of object, writes only reach dicts,
  lists and the program's own writable arrays, and `x += y` never mutates `x` in place.
"""

from __future__ import annotations

import ast
import operator
import re
import sys
from collections.abc import Callable
from typing import Any

import numpy as np

from grace.sandbox.errors import SandboxError
from grace.sandbox.policy import Policy
from grace.sandbox.views import ObsView
from grace.sandbox.xp import XPNamespace

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


def apply_call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def safe_builtins(policy: Policy) -> dict[str, Any]:
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


RP_LINE = re.compile(r"^Line (\d+): (.*)$")


def policy_check(tree: ast.Module, policy: Policy, fields: frozenset[str]) -> None:
    """Raise SandboxError("forbidden") for the first policy violation in `tree` (with a count)."""
    checker = _PolicyCheck(policy, fields)
    checker.visit(tree)
    if checker.errors:
        first = checker.errors[0]
        extra = f" (and {len(checker.errors) - 1} more)" if len(checker.errors) > 1 else ""
        raise SandboxError("forbidden", first.message + extra, first.line)
