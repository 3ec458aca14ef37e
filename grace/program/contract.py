"""THE reward contract's checks (used by `RewardProgram.validate`): module-level statements,
PARAMS (one literal dict of str -> finite float in range), signatures, observation fields."""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable

from grace.program.parse import PARAM_ABS_MAX, ProgramError
from grace.tasks.spec import ObsSchema

# -- PARAMS ------------------------------------------------------------------------------------------
TERMINAL_KEY = "terminal"
"""A reserved PARAMS key: the discounted value of the absorbing state an episode enters when it
ends by termination (never by a time limit), as in Discriminator-Actor-Critic, fitted by the
offline fitness. PPO, `grace train`, `grace eval` and every export pay it identically, as a shift
of every step's reward and a lump on termination (`grace.fitness.returns.payment`). Not part of a
program's identity."""

FLOOR_KEY = "floor"
"""A reserved PARAMS key, fitted with the terminal value: the lowest reward the data saw. Every
step pays the reward less min(floor, the absorbing state's per-step reward), so no payment on the
data is negative (`grace.fitness.returns.payment`). Not part of a program's identity."""

FITTED_KEYS = (TERMINAL_KEY, FLOOR_KEY)
"""The PARAMS keys the offline fitness fits from the data after the program's own: not logic."""

COST_PREFIX = "cost_"
"""PARAMS keys named `cost_...` are cost weights: >= 0 by contract, and the fitter keeps them so.
A term `-p["cost_x"] * x` can then only charge for x, never pay for it: action terms are written as
costs, because a bonus for acting pays a policy for something it can do in any state (measured: a
Pendulum reward paying for torque trained PPO to flail, benchmarks/results/teach.md)."""

POTENTIAL = "potential"
"""The optional shaping potential `def potential(s, p)`: Phi of a state, a batch of floats. The
reward applied everywhere is `r + gamma * Phi(s_next) * (1 - terminated) - Phi(s)` (potential-
based shaping, Ng, Harada & Russell 1999: optimal policies are unchanged; the absorbing state has
Phi = 0), with the terminal value paid as `grace.fitness.returns.payment` says; gamma is the discount PPO trains with."""


def assigns_params(node: ast.AST) -> bool:
    targets: list[ast.AST] = []
    if isinstance(node, ast.Assign):
        targets = list(node.targets)
    elif isinstance(node, ast.AnnAssign | ast.AugAssign):
        targets = [node.target]
    return any(isinstance(n, ast.Name) and n.id == "PARAMS" for t in targets for n in ast.walk(t))


def read_params(tree: ast.Module) -> tuple[ast.Assign | None, dict[str, float]]:
    nodes = [n for n in tree.body if assigns_params(n)]
    if not nodes:
        return None, {}
    node = nodes[0]
    if len(nodes) > 1:
        raise ProgramError(f"PARAMS is assigned more than once (lines {node.lineno} and {nodes[1].lineno}); "
                           "keep one `PARAMS = {...}`", nodes[1].lineno)
    if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
        raise ProgramError("PARAMS must be assigned once, as `PARAMS = {...}`", node.lineno)
    if not isinstance(node.value, ast.Dict):
        raise ProgramError("PARAMS must be a dict literal of numbers", node.lineno)
    out: dict[str, float] = {}
    for k, v in zip(node.value.keys, node.value.values, strict=True):
        if k is None:
            raise ProgramError("PARAMS cannot unpack other dicts (**); list every key", node.lineno)
        if not (isinstance(k, ast.Constant) and isinstance(k.value, str)):
            raise ProgramError("PARAMS keys must be literal strings (found a computed key)", k.lineno)
        key = k.value
        if not key.isidentifier():
            raise ProgramError(f"PARAMS key {key[:60]!r} must be an identifier string", k.lineno)
        if key in out:
            raise ProgramError(f"PARAMS key {key!r} appears twice", k.lineno)
        out[key] = _param_value(key, v)
    return node, out


def _param_value(key: str, node: ast.expr) -> float:
    sign = 1.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd) and isinstance(node.operand, ast.Constant):
        sign = -1.0 if isinstance(node.op, ast.USub) else 1.0
        node = node.operand
    if not isinstance(node, ast.Constant):
        raise ProgramError(f"PARAMS[{key!r}] must be a literal number (no expressions)", node.lineno)
    val = node.value
    if isinstance(val, bool) or not isinstance(val, int | float):
        raise ProgramError(f"PARAMS[{key!r}] = {repr(val)[:60]} is not a number", node.lineno)
    if isinstance(val, int) and abs(val) > PARAM_ABS_MAX:
        raise ProgramError(f"PARAMS[{key!r}] is out of range (|value| must be <= {PARAM_ABS_MAX:g})", node.lineno)
    value = sign * float(val)
    if not math.isfinite(value):
        raise ProgramError(f"PARAMS[{key!r}] is not finite (inf or nan)", node.lineno)
    if abs(value) > PARAM_ABS_MAX:
        raise ProgramError(f"PARAMS[{key!r}] is out of range (|value| must be <= {PARAM_ABS_MAX:g})", node.lineno)
    if key.startswith(COST_PREFIX) and value < 0:
        raise ProgramError(f"PARAMS[{key!r}] = {value:g}: keys named {COST_PREFIX}... are cost weights and must be >= 0",
                           node.lineno)
    return value


def check_param(key: object, value: object) -> None:
    if not isinstance(key, str) or not key.isidentifier():
        raise ProgramError(f"PARAMS key {str(key)[:60]!r} must be an identifier string")
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        raise ProgramError(f"PARAMS[{key!r}] is not a number") from None
    if not math.isfinite(v) or abs(v) > PARAM_ABS_MAX:
        raise ProgramError(f"PARAMS[{key!r}] = {v!r} is not finite or out of range (|value| <= {PARAM_ABS_MAX:g})")
    if key.startswith(COST_PREFIX) and v < 0:
        raise ProgramError(f"PARAMS[{key!r}] = {v!r}: keys named {COST_PREFIX}... are cost weights and must be >= 0")


# -- contract checks ------------------------------------------------------------------------------
_CONSTANT_NODES = (ast.Constant, ast.Tuple, ast.List, ast.Set, ast.Dict, ast.UnaryOp, ast.BinOp, ast.Name,
                   ast.Attribute, ast.Load, ast.operator, ast.unaryop)


def check_module_statements(tree: ast.Module, doc: ast.AST | None) -> None:
    """Module-level code: docstring, PARAMS, constant assignments, function definitions only."""
    for node in tree.body:
        if node is doc:
            continue
        if isinstance(node, ast.FunctionDef):
            if node.decorator_list:
                raise ProgramError("decorators are not allowed", node.lineno, "forbidden")
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            raise ProgramError("import statements are not allowed (use `xp`)", node.lineno, "forbidden")
        if isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if len(targets) == 1 and isinstance(targets[0], ast.Name):
                if targets[0].id == "PARAMS" or all(isinstance(n, _CONSTANT_NODES) for n in ast.walk(node.value)):
                    continue
                raise ProgramError(f"module-level `{targets[0].id} = ...` must be a constant (numbers, strings, "
                                   "tuples/lists/dicts of them, arithmetic); compute it inside a function",
                                   node.lineno, "forbidden")
        raise ProgramError(f"module-level {type(node).__name__} statements are not allowed: a reward file holds "
                           "only a docstring, PARAMS, constant assignments and function definitions",
                           node.lineno, "forbidden")


def check_own_lines(tree: ast.Module, node: ast.stmt | None, what: str) -> None:
    """The docstring and PARAMS stand on lines of their own (rewrites and exports rely on it)."""
    if node is None:
        return
    for other in tree.body:
        if other is not node and other.lineno <= (node.end_lineno or node.lineno) and (other.end_lineno or other.lineno) >= node.lineno:
            raise ProgramError(f"{what} must stand on lines of its own (another statement shares line "
                               f"{max(other.lineno, node.lineno)})", other.lineno, "forbidden")


def check_fields(functions: Iterable[ast.FunctionDef], schema: ObsSchema) -> None:
    allowed = set(schema.view_names) | {"raw"}
    for func in functions:
        obs_args = _obs_args(func)
        for node in ast.walk(func):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in obs_args and node.attr not in allowed):
                raise ProgramError(f"unknown observation field {node.value.id}.{node.attr}; "
                                   f"fields are: {', '.join(schema.view_names)}", node.lineno)


def check_signature(fn: ast.FunctionDef, name: str) -> None:
    args = fn.args
    n = len(args.posonlyargs) + len(args.args)
    if n != 4 or args.vararg or args.kwonlyargs or args.kwarg:
        got = ", ".join(a.arg for a in args.posonlyargs + args.args)
        raise ProgramError(f"`{name}` must take exactly 4 arguments (s, a, s_next, p); it takes ({got})", fn.lineno)


def check_potential_signature(fn: ast.FunctionDef) -> None:
    """`potential(s, p)`: a state (named view) and PARAMS, nothing else."""
    args = fn.args
    n = len(args.posonlyargs) + len(args.args)
    if n != 2 or args.vararg or args.kwonlyargs or args.kwarg or args.defaults:
        got = ", ".join(a.arg for a in args.posonlyargs + args.args)
        raise ProgramError(f"`{POTENTIAL}` must take exactly 2 arguments (s, p): a state and PARAMS, and return "
                           f"one float per state; it takes ({got})", fn.lineno)


def _obs_args(fn: ast.FunctionDef) -> set[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if fn.name == POTENTIAL:
        return {names[0]} if len(names) == 2 else set()
    return {names[0], names[2]} if len(names) == 4 else set()


def param_arg(fn: ast.FunctionDef) -> str | None:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    if fn.name == POTENTIAL:
        return names[1] if len(names) == 2 else None
    return names[3] if len(names) == 4 else None


def params_used(fn: ast.FunctionDef) -> set[str]:
    """The literal keys `p["..."]` a function reads from its PARAMS argument."""
    name = param_arg(fn)
    return {node.slice.value for node in ast.walk(fn)
            if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name
            and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str)}
