"""Restricted compilation of reward programs (in-process layer of the sandbox).

`compile_reward(source, schema)` checks a reward program against the policy
(`sandbox/policy.toml`), compiles it with RestrictedPython and runs its module body in a
namespace holding only allow-listed builtins, the curated `xp` and the guards. Every attribute
read goes through `guarded_getattr`, an allow-list per kind of object (view fields and `raw`,
a few array attributes, xp names, a few dict/list/str methods); item and attribute writes go
through `guarded_write` (dicts, lists and writable arrays only; never attributes).

This layer is not the whole sandbox: programs from untrusted sources run inside the worker
processes of `grace.sandbox.pool.SandboxPool`, which add OS limits, timeouts and a hard kill.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from RestrictedPython import compile_restricted_exec
from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence
from RestrictedPython.PrintCollector import PrintCollector

from grace.program import ProgramError, RewardProgram
from grace.sandbox.errors import (
    ERROR_KINDS,
    FILENAME,
    SandboxError,
    SandboxUnavailable,
    error_from_exception,
    program_line,
)
from grace.sandbox.guards import (
    RP_LINE,
    apply_call,
    guarded_getitem,
    guarded_getiter,
    guarded_inplacevar,
    guarded_write,
    make_getattr,
    policy_check,
    safe_builtins,
)
from grace.sandbox.policy import Policy, load_policy
from grace.sandbox.views import view
from grace.sandbox.xp import XPFunction, get_xp
from grace.tasks.spec import ObsSchema


@dataclass
class _Compiled:
    code: Any
    has_debug: bool
    has_potential: bool
    potential_params: frozenset[str]


_CODE_CACHE: dict[tuple[str, frozenset[str]], _Compiled] = {}


def _compile(source: str, policy: Policy, schema: ObsSchema) -> _Compiled:
    """Parse once (host-side limits), check the security policy, then THE contract validator
    (grace.program), then compile that same tree with RestrictedPython."""
    fields = frozenset(schema.view_names)
    key = (source, fields)
    hit = _CODE_CACHE.get(key)
    if hit is not None:
        return hit
    try:
        program, tree = RewardProgram.parsed(source)
        policy_check(tree, policy, fields)
        program.validate(schema)
    except ProgramError as e:
        raise SandboxError(e.kind, e.reason, e.line) from None
    has_debug, has_potential, potential_params = program.has_debug, program.has_potential, program.potential_params
    result = compile_restricted_exec(tree, FILENAME)  # RestrictedPython rewrites the tree in place
    if result.errors or result.code is None:
        msg = result.errors[0] if result.errors else "compilation failed"
        m = RP_LINE.match(msg)
        line = int(m.group(1)) if m else None
        raise SandboxError("forbidden", m.group(2) if m else msg, line)
    if len(_CODE_CACHE) > 256:
        _CODE_CACHE.clear()
    compiled = _Compiled(result.code, has_debug, has_potential, potential_params)
    _CODE_CACHE[key] = compiled
    return compiled


# ----------------------------------------------------------------------------- results

def _as_batch(name: str, value: Any, batch: int, out: np.ndarray | None = None,
              sums: list[float] | None = None) -> np.ndarray:
    """`value` checked and as float64 of shape (batch,). With `out` (a float64 (batch,) array,
    e.g. in the worker's shared block) the conversion writes there in one pass, and the check
    runs on what was written. With `sums`, the sum of the returned array is appended (the
    finiteness check computes it anyway, so callers that only reduce get it for free)."""
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
    if out is not None:
        np.copyto(out, arr)  # broadcasts a scalar; int/bool/float32 -> float64 in the same pass
        arr = out
    else:
        arr = arr.astype(np.float64, copy=False)
    if out is not None and sums is None:
        # fast path, in a worker (single-threaded BLAS there): NaN/inf make x.x non-finite, and
        # a dot is about twice as fast as a sum; an overflowing x.x just takes the exact check
        with np.errstate(over="ignore"):
            total = np.dot(arr, arr)
    else:
        total = np.add.reduce(arr, axis=None)  # fast path: NaN/inf propagate to the sum
    if not np.isfinite(total):
        bad = ~np.isfinite(arr)
        if bad.any():
            n_nan = int(np.isnan(arr).sum())
            n_inf = int(bad.sum()) - n_nan
            raise SandboxError("bad_return", f"{name} has non-finite values: {n_nan} NaN and "
                                             f"{n_inf} inf out of {arr.size}")
    if arr.shape != (batch,):
        arr = np.array(np.broadcast_to(arr, (batch,)))
        total = np.add.reduce(arr)
    if sums is not None:
        sums.append(float(total))
    return arr


def check_result(total: Any, components: Any, batch: int, max_components: int = 64,
                 out: Callable[[int], np.ndarray] | None = None, sums: list[float] | None = None
                 ) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Validate a program's return: total and components broadcast to (batch,), all finite.

    A scalar total (constant reward) is broadcast. Returns float64 arrays of shape (batch,).
    `out(i)`, when given, is where array i goes (0: the total, then the components in order):
    the worker writes results straight into its shared block that way. `sums` (a list) gets
    the sum of each returned array, in the same order.
    """
    out_total = _as_batch("the total reward", total, batch, out and out(0), sums)
    if components is None:
        return out_total, {}
    if type(components) is not dict:
        raise SandboxError("bad_return", "components must be a dict of name -> array, got "
                                         f"{type(components).__name__}")
    if len(components) > max_components:
        raise SandboxError("bad_return", f"too many components ({len(components)} > {max_components})")
    result: dict[str, np.ndarray] = {}
    for i, (key, value) in enumerate(components.items(), start=1):
        if type(key) is not str or not key or len(key) > 100:
            raise SandboxError("bad_return", f"component names must be short strings, got {key!r:.60}")
        result[key] = _as_batch(f"component {key!r}", value, batch, out and out(i), sums)
    return out_total, result


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
        fields = frozenset(schema.view_names)
        compiled = _compile(source, self.policy, schema)
        self.has_debug = compiled.has_debug
        self.has_potential = compiled.has_potential
        self.potential_params = compiled.potential_params
        """PARAMS keys only `potential` reads (PARAMS fitting leaves them alone)."""
        self._getattr = make_getattr(self.policy, fields)
        glb: dict[str, Any] = {
            "__builtins__": safe_builtins(self.policy),
            "__name__": "reward_program",
            "xp": get_xp(backend),
            "_getattr_": self._getattr,
            "_getitem_": guarded_getitem,
            "_getiter_": guarded_getiter,
            "_write_": guarded_write,
            "_inplacevar_": guarded_inplacevar,
            "_unpack_sequence_": guarded_unpack_sequence,
            "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
            "_apply_": apply_call,
            "_print_": PrintCollector,
        }
        try:
            with np.errstate(all="ignore"):
                exec(compiled.code, glb)  # noqa: S102 - restricted code, guarded namespace
        except Exception as e:  # noqa: BLE001
            raise error_from_exception(e) from None
        self._reward = glb.get("reward")
        self._debug = glb.get("debug") if self.has_debug else None
        self._potential = glb.get("potential") if self.has_potential else None
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

    def call_many(self, s_raw: Any, a: Any, s_next_raw: Any, params: Mapping[str, np.ndarray]) -> np.ndarray:
        """The totals of K PARAMS settings in one call (numpy): each value of `params` is a (K,)
        array, passed to the program as a (K, 1) array, so elementwise reward code broadcasts it
        against (B,) fields and returns (K, B) float64 (unchecked for finiteness: the caller
        scores non-finite rows as worst). Raises SandboxError when the total does not broadcast
        to (K, B). Code that reduces over the batch or branches on a parameter may broadcast
        to a wrong answer without an error: the caller compares with one-by-one calls."""
        k = len(next(iter(params.values())))
        # the data's float dtype: a one-by-one call's Python-float PARAMS compute in it (NEP 50)
        kind = np.asarray(s_next_raw).dtype
        dtype = kind if kind.kind == "f" else np.dtype(np.float64)
        batched = {name: np.asarray(v, np.float64).astype(dtype).reshape(k, 1) for name, v in params.items()}
        with np.errstate(all="ignore"):
            total, _ = self.raw_call(s_raw, a, s_next_raw, batched)  # type: ignore[arg-type]
            out = np.asarray(total)
        if out.dtype.kind not in "biuf":
            raise SandboxError("bad_return", f"the total reward must be numeric, got dtype {out.dtype}")
        shape = (k, int(np.shape(s_next_raw)[0]))
        try:
            return np.broadcast_to(out.astype(np.float64, copy=False), shape)
        except ValueError:
            raise SandboxError("bad_return", f"the total has shape {out.shape}, not {shape}") from None

    def potential(self, s_raw: Any, params: Mapping[str, float] | None = None) -> Any:
        """The shaping potential Phi of a batch of states (`potential(s, p)`), 0 without one.

        numpy: checked float64 (B,) (raises SandboxError: bad_return names "the potential");
        jax: float32 broadcast to the batch shape (traceable under jit/vmap)."""
        if self.backend == "jax":
            import jax.numpy as jnp

            shape = jnp.shape(s_raw)[:-1]
            if self._potential is None:
                return jnp.zeros(shape, jnp.float32)
            return jnp.broadcast_to(jnp.asarray(self._call_potential(s_raw, params), jnp.float32), shape)
        batch = int(np.shape(s_raw)[0])
        if self._potential is None:
            return np.zeros(batch)
        with np.errstate(all="ignore"):
            return _as_batch("the potential", self._call_potential(s_raw, params), batch)

    def _call_potential(self, s_raw: Any, params: Mapping[str, float] | None) -> Any:
        s, _, _, p = self._args(s_raw, None, s_raw, params)
        try:
            out = self._potential(s, p)  # type: ignore[misc]
        except SandboxError:
            raise
        except Exception as e:  # noqa: BLE001
            raise error_from_exception(e) from None
        if type(out) is tuple or out is None:
            raise SandboxError("bad_return", "potential must return one float per state (not a tuple or None)")
        return out

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
    "ERROR_KINDS", "FILENAME", "CompiledReward", "SandboxError", "SandboxUnavailable",
    "XPFunction", "check_result", "compile_reward", "error_from_exception", "guarded_write",
    "make_getattr", "program_line", "split_return",
]
