"""A reward's named terms, one at a time: which term teaches, and which makes PPO fail on some seeds.

grace's operator writes a reward as a sum of named terms, `return total, {name: term, ...}`. A term
can hold on the demos and still mislead PPO: the fixed-horizon CartPole winner of quality23
balanced on 15 of 20 seeds, its pole-angle term alone on 20, its cart velocity x pole angular
velocity term alone on 17 (benchmarks/results/term_ablation/quality23-cartpole_fixed.md).
`term_alone` rewrites a program to pay one term (the same PARAMS, components and potential);
`grace train --terms` and benchmarks/term_ablation.py train them beside the whole reward. The
rewrite is validated here, as every rewrite of program text must be.
"""

from __future__ import annotations

import ast

from grace.program.contract import params_used
from grace.program.core import RewardProgram
from grace.program.parse import ProgramError, parse_source


def _reward_def(tree: ast.Module) -> ast.FunctionDef:
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "reward"), None)
    if fn is None:
        raise ProgramError("the program defines no reward function")
    return fn


def term_names(source: str) -> list[str]:
    """The term names of the reward's last statement, `return total, {name: term, ...}` (constant
    string keys); ProgramError (one line) when it does not end that way."""
    ret = _reward_def(parse_source(source)).body[-1]
    value = ret.value if isinstance(ret, ast.Return) else None
    if not (isinstance(value, ast.Tuple) and len(value.elts) == 2 and isinstance(value.elts[1], ast.Dict)
            and value.elts[1].keys
            and all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in value.elts[1].keys)):
        raise ProgramError("the reward does not end in `return total, {name: term, ...}`: it has no named terms")
    return [k.value for k in value.elts[1].keys]  # type: ignore[union-attr]


def term_alone(source: str, name: str, schema: object | None = None) -> str:
    """`source` whose reward pays only the term `name`: the reward is renamed `full_reward` and a
    new `reward` returns `(terms[name], terms)`. Validated (against `schema`, an ObsSchema, when
    given); ProgramError when `name` is not one of `term_names(source)`."""
    if name not in term_names(source):
        raise ProgramError(f"the reward has no term {name!r}")
    tree = parse_source(source)
    if any(isinstance(n, ast.FunctionDef) and n.name == "full_reward" for n in tree.body):
        raise ProgramError("the program already defines full_reward: its terms cannot be taken apart here")
    lines = source.splitlines()
    at = _reward_def(tree).lineno - 1
    if not lines[at].startswith("def reward("):
        raise ProgramError("the reward's `def` is not at the start of its line")
    lines[at] = "def full_reward(" + lines[at][len("def reward("):]
    out = ("\n".join(lines).rstrip() + "\n\n\ndef reward(s, a, s_next, p):\n"
           f"    total, terms = full_reward(s, a, s_next, p)\n    return terms[{name!r}], terms\n")
    RewardProgram(out).validate(schema)  # type: ignore[arg-type]
    return out


def keep_term(source: str, name: str, schema: object | None = None) -> str:
    """`source` reduced to its term `name`: the reward returns `(term, {name: term})`, the
    assignments the term does not need and the PARAMS keys only they read are dropped, and the
    module docstring's first line says which term of which reward it is. The readable form of
    `term_alone` for a program that computes its terms in plain `name = expression` lines (grace's
    operator writes them so); ProgramError (one line) otherwise. Validated against `schema`."""
    names = term_names(source)
    if name not in names:
        raise ProgramError(f"the reward has no term {name!r}")
    if len(names) < 2:
        raise ProgramError("the reward has one term: nothing to take apart")
    program = RewardProgram(source)
    tree = parse_source(source)
    fn = _reward_def(tree)
    body = fn.body[1:] if fn.body and _is_docstring(fn.body[0]) else fn.body
    if not all(_plain_assign(s) for s in body[:-1]):
        raise ProgramError("the reward computes its terms in more than plain `name = expression` lines")
    others = set().union(*(params_used(f) for f in tree.body if isinstance(f, ast.FunctionDef) and f is not fn))
    read_before = params_used(fn)
    ret = fn.body[-1]
    value = ret.value.elts[1].values[names.index(name)]  # type: ignore[attr-defined]
    ret.value = ast.Tuple([value, ast.Dict([ast.Constant(name)], [value])], ast.Load())  # type: ignore[attr-defined]
    needed = _loads(ret)
    kept = []
    for stmt in reversed(body[:-1]):  # a line stays when a later kept line (or the return) reads it
        if stmt.targets[0].id in needed:  # type: ignore[attr-defined]
            kept.append(stmt)
            needed |= _loads(stmt)
    fn.body = fn.body[: len(fn.body) - len(body)] + kept[::-1] + [ret]
    ast.fix_missing_locations(tree)
    dropped = read_before - params_used(fn) - others  # the keys only the dropped lines read
    params = {k: v for k, v in program.params.items() if k not in dropped}
    out = RewardProgram(ast.unparse(tree) + "\n").with_params(params)
    first, _, rest = program.docstring.partition("\n")
    summary = first.removeprefix("Reward:").strip().rstrip(".")
    doc = f"Reward: {name}, one term of the reward {summary or program.program_id}." + (f"\n{rest}" if rest else "")
    out = out.with_docstring(doc)
    out.validate(schema)  # type: ignore[arg-type]
    return out.source


def _is_docstring(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and isinstance(stmt.value.value, str)


def _plain_assign(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)


def _loads(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)}
