"""Generic AST edits for reward programs the term grammar cannot read (LLM- or human-written).

Every edit keeps the contract: operator swaps (+ - *), swaps among xp functions of the same
arity, constants lifted into PARAMS or perturbed there, wrapping an expression in abs/square,
adding a new term line (with its component) to every return, and for simplification dropping
one summand of the total plus the dead assignments and PARAMS it leaves behind.
"""

from __future__ import annotations

import ast
import math
import random
from typing import Any

from grace.program import RewardProgram
from grace.proposers.offline.terms import SHAPE_ROLES, Term, rnd, term_code

UNARY = ("abs", "square", "tanh", "sin", "cos")
BINARY = ("minimum", "maximum")
OPS = (ast.Add, ast.Sub, ast.Mult)


def _fn(tree: ast.Module) -> ast.FunctionDef:
    return next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "reward")


def _returns(fn: ast.FunctionDef) -> list[ast.Return]:
    return [n for n in ast.walk(fn) if isinstance(n, ast.Return) and n.value is not None]


def _finish(tree: ast.Module, params: dict[str, float]) -> str:
    """Unparse and write PARAMS back in the canonical layout."""
    ast.fix_missing_locations(tree)
    src = ast.unparse(tree) + "\n"
    return RewardProgram(src).with_params(params).source


def _names(fn: ast.FunctionDef) -> set[str]:
    return {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)}


def _used_params(tree: ast.Module) -> set[str]:
    return {n.slice.value for n in ast.walk(tree) if isinstance(n, ast.Subscript)
            and isinstance(n.slice, ast.Constant) and isinstance(n.slice.value, str)}


def add_term_line(program: RewardProgram, term: Term) -> str:
    """Add `term` as a new named line and component of every return."""
    tree = ast.parse(program.source)
    fn, params = _fn(tree), dict(program.params)
    taken = _names(fn) | {"s", "a", "s_next", "p", "xp"}
    name, i = term.feature.slug, 2
    while name in taken or not name.isidentifier():
        name, i = f"{term.feature.slug}_{i}", i + 1
    roles: dict[str, str] = {}
    for r in SHAPE_ROLES[term.shape] + ("g" if term.gate else ""):
        key, j = f"{r}_{name}", 2
        while key in params:
            key, j = f"{r}_{name}_{j}", j + 1
        roles[r] = key
        params[key] = rnd(term.gate[2] if r == "g" and term.gate else term.params.get(r, 1.0 if r in "ws" else 0.0))
    pname = fn.args.args[3].arg
    code = term_code(term, roles).replace('p["', f'{pname}["')
    code = code.replace("s_next.", f"{fn.args.args[2].arg}.").replace("(a ", f"({fn.args.args[1].arg} ")
    stmt = ast.parse(f"{name} = {code}").body[0]
    returns = _returns(fn)
    at = len(fn.body) - 1 if len(returns) == 1 and fn.body[-1] is returns[0] else 0
    if at == 0 and ast.get_docstring(fn) is not None:
        at = 1
    fn.body.insert(at, stmt)
    for ret in returns:
        val = ret.value
        if isinstance(val, ast.Tuple) and len(val.elts) == 2:
            val.elts[0] = ast.BinOp(val.elts[0], ast.Add(), ast.Name(name, ast.Load()))
            if isinstance(val.elts[1], ast.Dict):
                val.elts[1].keys.append(ast.Constant(name))
                val.elts[1].values.append(ast.Name(name, ast.Load()))
        else:
            ret.value = ast.BinOp(val, ast.Add(), ast.Name(name, ast.Load()))
    return _finish(tree, params)


def _liftable(fn: ast.FunctionDef) -> list[ast.Constant]:
    skip: set[int] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.keyword | ast.Subscript):
            skip |= {id(x) for x in ast.walk(node.value if isinstance(node, ast.keyword) else node.slice)}
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            skip |= {id(x) for x in ast.walk(node.right)}
        if isinstance(node, ast.Expr):
            skip |= {id(x) for x in ast.walk(node)}
    return [n for n in ast.walk(fn) if isinstance(n, ast.Constant) and id(n) not in skip
            and isinstance(n.value, int | float) and not isinstance(n.value, bool)]


def generic_mutate(program: RewardProgram, schema: Any, rng: random.Random,
                   new_term: Term | None) -> tuple[str, dict[str, Any]]:
    """One random valid edit of an arbitrary program; raises ValueError if none applies."""
    kinds = ["op_swap", "func_swap", "lift_const", "wrap", "add_line", "perturb_const"]
    rng.shuffle(kinds)
    for kind in kinds:
        try:
            out = _apply(kind, program, rng, new_term)
        except (ValueError, StopIteration, KeyError, IndexError, SyntaxError):
            continue
        if out is None:
            continue
        src, meta = out
        try:
            new = RewardProgram(src).validate(schema)
        except ValueError:
            continue
        if kind == "perturb_const" or new.program_id != program.program_id:
            return src, {"mutation": kind, "generic": True, **meta}
    raise ValueError("no generic mutation applies to this program")


def _apply(kind: str, program: RewardProgram, rng: random.Random,
           new_term: Term | None) -> tuple[str, dict[str, Any]] | None:
    tree = ast.parse(program.source)
    fn, params = _fn(tree), dict(program.params)
    if kind == "add_line":
        if new_term is None:
            return None
        return add_term_line(program, new_term), {"field": new_term.feature.slug}
    if kind == "op_swap":
        nodes = [n for n in ast.walk(fn) if isinstance(n, ast.BinOp) and isinstance(n.op, OPS)]
        node = rng.choice(nodes)
        old = type(node.op)
        node.op = rng.choice([o for o in OPS if o is not old])()
        return _finish(tree, params), {"from": old.__name__, "to": type(node.op).__name__}
    if kind == "func_swap":
        calls = [n for n in ast.walk(fn) if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute)
                 and isinstance(n.func.value, ast.Name) and n.func.value.id == "xp" and not n.keywords
                 and ((n.func.attr in UNARY and len(n.args) == 1) or (n.func.attr in BINARY and len(n.args) == 2))]
        call = rng.choice(calls)
        pool = UNARY if call.func.attr in UNARY else BINARY
        old = call.func.attr
        call.func.attr = rng.choice([f for f in pool if f != old])
        return _finish(tree, params), {"from": old, "to": call.func.attr}
    if kind == "lift_const":
        const = rng.choice(_liftable(fn))
        key, i = "k1", 1
        while key in params:
            i += 1
            key = f"k{i}"
        params[key] = float(const.value)
        pname = fn.args.args[3].arg
        new = ast.Subscript(ast.Name(pname, ast.Load()), ast.Constant(key), ast.Load())
        for node in ast.walk(fn):
            for fname, value in ast.iter_fields(node):
                if value is const:
                    setattr(node, fname, new)
                elif isinstance(value, list) and any(v is const for v in value):
                    value[[id(v) for v in value].index(id(const))] = new
        return _finish(tree, params), {"param": key}
    if kind == "perturb_const":
        key = rng.choice(sorted(params))
        params[key] = rnd(params[key] * math.exp(rng.gauss(0, 0.5)) if params[key] else rng.gauss(0, 0.5))
        return _finish(tree, params), {"param": key}
    if kind == "wrap":
        obs = fn.args.args[2].arg
        targets = [n for n in ast.walk(fn) if isinstance(n, ast.Attribute)
                   and isinstance(n.value, ast.Name) and n.value.id == obs and n.attr != "raw"]
        target = rng.choice(targets)
        func = rng.choice(("abs", "square"))
        wrapped = ast.Call(ast.Attribute(ast.Name("xp", ast.Load()), func, ast.Load()), [target], [])
        for node in ast.walk(fn):
            for fname, value in ast.iter_fields(node):
                if value is target:
                    setattr(node, fname, wrapped)
                    break
                if isinstance(value, list) and any(v is target for v in value):
                    value[[id(v) for v in value].index(id(target))] = wrapped
                    break
            else:
                continue
            break
        return _finish(tree, params), {"field": target.attr, "func": func}
    return None


def _summands(node: ast.expr, sign: int = 1) -> list[tuple[int, ast.expr]]:
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub):
        right = -sign if isinstance(node.op, ast.Sub) else sign
        return _summands(node.left, sign) + _summands(node.right, right)
    return [(sign, node)]


def _rebuild(parts: list[tuple[int, ast.expr]]) -> ast.expr:
    sign, out = parts[0]
    expr: ast.expr = out if sign > 0 else ast.UnaryOp(ast.USub(), out)
    for sign, node in parts[1:]:
        expr = ast.BinOp(expr, ast.Add() if sign > 0 else ast.Sub(), node)
    return expr


def generic_simplify(program: RewardProgram, magnitudes: dict[str, float]) -> tuple[str, dict[str, Any]]:
    """Drop the smallest summand of the total (by component magnitude, else the last),
    then dead assignments and unused PARAMS."""
    tree = ast.parse(program.source)
    fn, params = _fn(tree), dict(program.params)
    meta: dict[str, Any] = {"mutation": "drop_summand", "generic": True}
    rets = _returns(fn)
    if len(rets) == 1:
        ret = rets[0]
        tup = isinstance(ret.value, ast.Tuple) and len(ret.value.elts) == 2
        parts = _summands(ret.value.elts[0] if tup else ret.value)
        if len(parts) > 1:
            def size(i: int) -> float:
                node = parts[i][1]
                return magnitudes.get(node.id, math.inf) if isinstance(node, ast.Name) else math.inf
            drop = min(range(len(parts)), key=lambda i: (size(i), -i))
            dropped = parts.pop(drop)[1]
            meta["dropped"] = ast.unparse(dropped)
            if tup:
                ret.value.elts[0] = _rebuild(parts)
                comp = ret.value.elts[1]
                if isinstance(comp, ast.Dict) and isinstance(dropped, ast.Name):
                    keep = [i for i, v in enumerate(comp.values) if not (isinstance(v, ast.Name) and v.id == dropped.id)]
                    comp.keys = [comp.keys[i] for i in keep]
                    comp.values = [comp.values[i] for i in keep]
            else:
                ret.value = _rebuild(parts)
    changed = True
    while changed:
        changed = False
        loads = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
        for stmt in list(fn.body):
            if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                    and isinstance(stmt.targets[0], ast.Name) and stmt.targets[0].id not in loads):
                fn.body.remove(stmt)
                changed = True
    used = _used_params(tree)
    params = {k: v for k, v in params.items() if k in used}
    return _finish(tree, params), meta
