"""Reward programs: THE contract validator, identity, PARAMS, provenance, safe rewriting.

The contract (docs/architecture.md): a module holding an optional docstring, an optional
`PARAMS = {...}` dict literal of str -> finite float, constant assignments, and function
definitions, among them `def reward(s, a, s_next, p)` returning the total or
`(total, components)`, optionally `def debug(s, a, s_next, p) -> str` and the shaping potential
`def potential(s, p)` (one float per state; see `grace.program.contract.POTENTIAL`). `xp` is injected by
the sandbox. Nothing else may run at module level.

This module never executes program code; it only reads the AST. Host-side limits come first
(grace.program.parse). A text is parsed once (trees are cached per source and shared: never
mutate `RewardProgram.tree`). Every rewrite (PARAMS write-back, docstring / provenance)
replaces token-exact spans of the AST nodes; its output is parsed and validated again and must
keep the program's logic unchanged.
"""

from __future__ import annotations

import ast
import copy
import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from grace.program.contract import (
    FITTED_KEYS,
    POTENTIAL,
    assigns_params,
    check_fields,
    check_module_statements,
    check_own_lines,
    check_param,
    check_potential_signature,
    check_signature,
    param_arg,
    params_used,
    read_params,
)
from grace.program.parse import (
    SOURCE_LIMIT_BYTES,
    ProgramError,
    SourceCache,
    cached_tree,
    parse_source,
)
from grace.program.text import (
    PROVENANCE_MARKER,
    fmt_number,
    format_params,
    is_string_expr,
    offset,
    one_line,
    parse_provenance,
    replace_span,
    string_literal,
    without_docstrings,
)
from grace.tasks.spec import ObsSchema

_LOGIC = SourceCache(8 << 20)
"""(source,) -> (normalised, size); 8 Mi characters of source: ~4,000 typical programs, 128 of
the largest."""
_VALID = SourceCache(8 << 20)
"""(source, schema) -> (the ProgramError, or None when valid,)."""


# -- the program -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class RewardProgram:
    source: str

    @cached_property
    def tree(self) -> ast.Module:
        """The parsed module (shared per source text: read it, never mutate it)."""
        return cached_tree(self.source)

    @cached_property
    def docstring_node(self) -> ast.Expr | None:
        body = self.tree.body
        return body[0] if body and is_string_expr(body[0]) else None  # type: ignore[return-value]

    @cached_property
    def params_node(self) -> ast.Assign | None:
        """The one `PARAMS = {...}` statement (validated), or None."""
        return self._params[0]

    @cached_property
    def params(self) -> dict[str, float]:
        return self._params[1]

    @cached_property
    def _params(self) -> tuple[ast.Assign | None, dict[str, float]]:
        return read_params(self.tree)

    @cached_property
    def docstring(self) -> str:
        return ast.get_docstring(self.tree, clean=True) or ""

    @cached_property
    def functions(self) -> dict[str, ast.FunctionDef]:
        return {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}

    @property
    def has_debug(self) -> bool:
        return "debug" in self.functions

    @property
    def has_potential(self) -> bool:
        """The program defines the optional shaping potential `potential(s, p)`."""
        return POTENTIAL in self.functions

    @cached_property
    def potential_params(self) -> frozenset[str]:
        """PARAMS keys only the potential reads (the discrimination fitness cannot see them, so
        PARAMS fitting leaves them alone)."""
        if not self.has_potential:
            return frozenset()
        other = set().union(*(params_used(f) for n, f in self.functions.items() if n != POTENTIAL))
        return frozenset(params_used(self.functions[POTENTIAL]) - other)

    # -- identity and size -----------------------------------------------------------------
    def _logic_tree(self) -> ast.Module:
        """The tree without docstrings and with PARAMS values zeroed (keys sorted), built beside
        the shared parsed tree (which stays untouched) without copying it whole."""
        node = self.params_node
        tree = without_docstrings(self.tree)
        assert isinstance(tree, ast.Module)
        body = []
        for stmt in tree.body:
            if node is not None and isinstance(stmt, ast.Assign) and stmt.lineno == node.lineno and assigns_params(stmt):
                keys = sorted(k for k in self.params if k not in FITTED_KEYS)  # fitted data, not logic
                if not keys and self.params:
                    continue  # `PARAMS = {"terminal": v, "floor": w}` alone: the same logic as no PARAMS at all
                stmt = copy.copy(stmt)
                stmt.value = ast.Dict(keys=[ast.Constant(k) for k in keys], values=[ast.Constant(0) for _ in keys])
            body.append(stmt)
        return ast.Module(body=body, type_ignores=tree.type_ignores)

    @cached_property
    def _logic(self) -> tuple[str, int]:
        """(normalised, size), shared per source text: the search asks for both of every
        candidate, its parents and its twins many times over."""
        hit = _LOGIC.get((self.source,))
        if hit is None:
            tree = self._logic_tree()
            body = [n for n in tree.body if not assigns_params(n)]
            hit = (ast.dump(tree, annotate_fields=False, include_attributes=False),
                   sum(1 for stmt in body for _ in ast.walk(stmt)))
            _LOGIC.put((self.source,), hit)
        return hit

    @property
    def normalised(self) -> str:
        """AST dump without docstrings or PARAMS values: the program's logic."""
        return self._logic[0]

    @cached_property
    def program_id(self) -> str:
        return hashlib.sha256(self.normalised.encode()).hexdigest()[:12]

    @property
    def size(self) -> int:
        """AST nodes in the logic (docstrings and PARAMS excluded): the parsimony measure."""
        return self._logic[1]

    @cached_property
    def logic_dump(self) -> str:
        """The module's statements other than the docstring and PARAMS (code, comments aside)."""
        skip = {id(self.docstring_node), id(self.params_node)}
        return "\n".join(ast.dump(n) for n in self.tree.body if id(n) not in skip)

    # -- validation ------------------------------------------------------------------------
    def validate(self, schema: ObsSchema | None = None) -> RewardProgram:
        """THE contract validator: raise ProgramError with a precise message, else return self.
        The verdict is kept per (source, schema): the search validates a candidate where it is
        made and again where it is stored."""
        hit = _VALID.get((self.source, schema))
        if hit is None:
            try:
                self._validate(schema)
                hit = (None,)
            except ProgramError as exc:
                hit = (exc,)
            _VALID.put((self.source, schema), hit)
        verdict = hit[0]
        if verdict is not None:
            raise ProgramError(verdict.reason, verdict.line, verdict.kind)
        return self

    def _validate(self, schema: ObsSchema | None) -> None:
        tree = self.tree
        check_module_statements(tree, self.docstring_node)
        _ = self.params
        check_own_lines(tree, self.docstring_node, "the docstring")
        check_own_lines(tree, self.params_node, "PARAMS")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                raise ProgramError("import statements are not allowed (use `xp`)", node.lineno, "forbidden")
        fn = self.functions.get("reward")
        if fn is None:
            raise ProgramError("no `def reward(s, a, s_next, p)` found")
        check_signature(fn, "reward")
        if "debug" in self.functions:
            check_signature(self.functions["debug"], "debug")
        if POTENTIAL in self.functions:
            check_potential_signature(self.functions[POTENTIAL])
        if schema is not None:
            check_fields(self.functions.values(), schema)
        for func in self.functions.values():
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == param_arg(func)
                    and isinstance(node.slice, ast.Constant)
                    and isinstance(node.slice.value, str)
                    and node.slice.value not in self.params
                ):
                    raise ProgramError(f"p[{node.slice.value[:60]!r}] is used but PARAMS has no such key", node.lineno)

    # -- rewriting (token-exact spans, re-validated) --------------------------------------------
    def with_params(self, params: dict[str, float]) -> RewardProgram:
        """The same logic with new PARAMS values written into the source."""
        ordered = {k: params[k] for k in self.params if k in params} | dict(params)
        for key, value in ordered.items():
            check_param(key, value)
        literal = format_params(ordered)
        node = self.params_node
        if node is not None:
            text = replace_span(self.source, node, literal)
        elif self.docstring_node is not None:
            end = offset(self.source, self.docstring_node.end_lineno, self.docstring_node.end_col_offset)
            text = self.source[:end] + "\n\n" + literal + self.source[end:]
        else:
            text = literal + "\n\n\n" + self.source
        new = RewardProgram(text.rstrip() + "\n")
        expected = {k: float(fmt_number(v)) for k, v in ordered.items()}
        _same_logic(self, new, "writing PARAMS", params=expected, docstring=self._raw_docstring)
        return new

    def with_docstring(self, text: str) -> RewardProgram:
        """Replace (or add) the module docstring (exactly `text`, stripped, plus a newline)."""
        value = text.strip() + "\n"
        literal = string_literal(value)
        node = self.docstring_node
        src = replace_span(self.source, node, literal) if node is not None else literal + "\n\n" + self.source
        new = RewardProgram(src.rstrip() + "\n")
        _same_logic(self, new, "writing the docstring", params=self.params, docstring=value)
        return new

    @cached_property
    def _raw_docstring(self) -> str | None:
        node = self.docstring_node
        return node.value.value if node is not None else None  # type: ignore[attr-defined]

    @property
    def summary(self) -> str:
        """The docstring's first line without the provenance block."""
        return self.docstring.split(PROVENANCE_MARKER)[0].strip().splitlines()[0] if self.docstring.strip() else ""

    def with_provenance(self, fields: dict[str, object], summary: str | None = None) -> RewardProgram:
        head = summary if summary is not None else self.docstring.split(PROVENANCE_MARKER)[0].strip()
        head = head.replace(PROVENANCE_MARKER, "grace provenance -")
        block = "\n".join(f"  {one_line(k)}: {one_line(v)}" for k, v in fields.items())
        return self.with_docstring(f"{head or 'Reward program.'}\n\n{PROVENANCE_MARKER}\n{block}")

    @property
    def provenance(self) -> dict[str, str]:
        return parse_provenance(self.docstring)

    @classmethod
    def parsed(cls, source: str) -> tuple[RewardProgram, ast.Module]:
        """A program and a private tree of it (parsed now, not shared: the caller may mutate it
        once it has finished validating)."""
        tree = parse_source(source)
        program = cls(source)
        program.__dict__["tree"] = tree
        return program, tree

    @classmethod
    def from_file(cls, path: str | Path) -> RewardProgram:
        """Read a reward file (UTF-8; size-capped before reading it all)."""
        return cls(read_reward_file(path))


def read_reward_file(path: str | Path) -> str:
    """A reward file's text: UTF-8 and at most SOURCE_LIMIT_BYTES (checked before reading it
    all); a missing, unreadable, oversized or non-UTF-8 file is a ProgramError."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > SOURCE_LIMIT_BYTES:
            raise ProgramError(f"{path} is {size} bytes; reward programs are limited to {SOURCE_LIMIT_BYTES}",
                               kind="forbidden")
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProgramError(f"{path} is not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise ProgramError(f"cannot read {path}: {exc.strerror or exc}") from None


def _same_logic(old: RewardProgram, new: RewardProgram, what: str, *, params: dict[str, float],
                docstring: str | None) -> None:
    """A rewrite's output parses, keeps the code statement for statement, and says what it should."""
    try:
        ok = (new.logic_dump == old.logic_dump and new.params == params and new._raw_docstring == docstring)
    except ProgramError as exc:
        raise ProgramError(f"{what} produced an invalid program ({exc}); refused", kind="forbidden") from None
    if not ok:
        raise ProgramError(f"{what} would change the program's code; refused", kind="forbidden")
