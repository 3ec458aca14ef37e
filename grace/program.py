"""Reward programs: parsing, static validation, identity, PARAMS rewriting and provenance.

The contract (DESIGN.md): a module with an optional docstring, an optional `PARAMS` dict literal
of numeric constants, `def reward(s, a, s_next, p)` returning the total or `(total, components)`,
and optionally `def debug(s, a, s_next, p) -> str`. `xp` is injected by the sandbox.
This module never executes program code; it only reads the AST.
"""

from __future__ import annotations

import ast
import hashlib
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from grace.tasks.spec import ObsSchema

PROVENANCE_MARKER = "grace provenance:"
ARGS = ("s", "a", "s_next", "p")


class ProgramError(ValueError):
    """A program breaks the contract. `str()` is one line a proposer or a user can act on."""

    def __init__(self, message: str, line: int | None = None) -> None:
        self.line = line
        super().__init__(f"line {line}: {message}" if line else message)


@dataclass(frozen=True)
class RewardProgram:
    source: str

    # -- parsing ---------------------------------------------------------------------------
    @cached_property
    def tree(self) -> ast.Module:
        try:
            return ast.parse(self.source)
        except SyntaxError as exc:
            raise ProgramError(f"syntax error: {exc.msg}", exc.lineno) from None

    @cached_property
    def _params_node(self) -> ast.Assign | None:
        for node in self.tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PARAMS" for t in node.targets
            ):
                return node
        return None

    @cached_property
    def params(self) -> dict[str, float]:
        node = self._params_node
        if node is None:
            return {}
        try:
            value = ast.literal_eval(node.value)
        except ValueError:
            raise ProgramError("PARAMS must be a dict literal of numbers", node.lineno) from None
        if not isinstance(value, dict):
            raise ProgramError("PARAMS must be a dict literal of numbers", node.lineno)
        out: dict[str, float] = {}
        for key, val in value.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ProgramError(f"PARAMS key {key!r} must be an identifier string", node.lineno)
            if isinstance(val, bool) or not isinstance(val, int | float):
                raise ProgramError(f"PARAMS[{key!r}] = {val!r} is not a number", node.lineno)
            out[key] = float(val)
        return out

    @cached_property
    def docstring(self) -> str:
        return ast.get_docstring(self.tree, clean=True) or ""

    @cached_property
    def functions(self) -> dict[str, ast.FunctionDef]:
        return {n.name: n for n in self.tree.body if isinstance(n, ast.FunctionDef)}

    @property
    def has_debug(self) -> bool:
        return "debug" in self.functions

    # -- identity and size -----------------------------------------------------------------
    @cached_property
    def normalised(self) -> str:
        """AST dump without docstrings or PARAMS values: the program's logic."""
        tree = _strip_docstrings(ast.parse(self.source))
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict) and any(
                isinstance(t, ast.Name) and t.id == "PARAMS" for t in node.targets
            ):
                keys = sorted(ast.literal_eval(k) for k in node.value.keys if k is not None)
                node.value.keys = [ast.Constant(k) for k in keys]
                node.value.values = [ast.Constant(0) for _ in keys]
        return ast.dump(tree, annotate_fields=False, include_attributes=False)

    @cached_property
    def program_id(self) -> str:
        return hashlib.sha256(self.normalised.encode()).hexdigest()[:12]

    @cached_property
    def size(self) -> int:
        """AST nodes in the logic (docstrings and PARAMS excluded): the parsimony measure."""
        tree = _strip_docstrings(ast.parse(self.source))
        body = [n for n in tree.body if n is not self._find_params(tree)]
        return sum(1 for stmt in body for _ in ast.walk(stmt))

    @staticmethod
    def _find_params(tree: ast.Module) -> ast.AST | None:
        for node in tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "PARAMS" for t in node.targets
            ):
                return node
        return None

    # -- validation ------------------------------------------------------------------------
    def validate(self, schema: ObsSchema | None = None) -> RewardProgram:
        """Raise ProgramError with a precise message if the contract is broken; else self."""
        tree = self.tree
        _ = self.params
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                raise ProgramError("import statements are not allowed (use `xp`)", node.lineno)
        fn = self.functions.get("reward")
        if fn is None:
            raise ProgramError("no `def reward(s, a, s_next, p)` found")
        _check_signature(fn, "reward")
        if "debug" in self.functions:
            _check_signature(self.functions["debug"], "debug")
        if schema is not None:
            allowed = set(schema.names) | {"raw"}
            for func in self.functions.values():
                obs_args = _obs_args(func)
                for node in ast.walk(func):
                    if (
                        isinstance(node, ast.Attribute)
                        and isinstance(node.value, ast.Name)
                        and node.value.id in obs_args
                        and node.attr not in allowed
                    ):
                        raise ProgramError(
                            f"unknown observation field {node.value.id}.{node.attr}; "
                            f"fields are: {', '.join(schema.names)}",
                            node.lineno,
                        )
        for func in self.functions.values():
            for node in ast.walk(func):
                if (
                    isinstance(node, ast.Subscript)
                    and isinstance(node.value, ast.Name)
                    and node.value.id == _param_arg(func)
                    and isinstance(node.slice, ast.Constant)
                    and isinstance(node.slice.value, str)
                    and node.slice.value not in self.params
                ):
                    raise ProgramError(
                        f"p[{node.slice.value!r}] is used but PARAMS has no such key", node.lineno
                    )
        return self

    # -- rewriting -------------------------------------------------------------------------
    def with_params(self, params: dict[str, float]) -> RewardProgram:
        """The same logic with new PARAMS values written into the source."""
        ordered = {k: params[k] for k in self.params if k in params} | dict(params)
        literal = format_params(ordered)
        node = self._params_node
        lines = self.source.splitlines()
        if node is None:
            insert_at = _after_docstring_line(self.tree)
            lines[insert_at:insert_at] = ["", literal]
        else:
            lines[node.lineno - 1 : node.end_lineno] = [literal]
        return RewardProgram("\n".join(lines).rstrip() + "\n")

    def with_docstring(self, text: str) -> RewardProgram:
        """Replace (or add) the module docstring."""
        doc = '"""' + text.replace('"""', "'''").strip() + '\n"""'
        lines = self.source.splitlines()
        body = self.tree.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            lines[body[0].lineno - 1 : body[0].end_lineno] = [doc]
        else:
            lines[0:0] = [doc, ""]
        return RewardProgram("\n".join(lines).rstrip() + "\n")

    @property
    def summary(self) -> str:
        """The docstring's first line without the provenance block."""
        return self.docstring.split(PROVENANCE_MARKER)[0].strip().splitlines()[0] if self.docstring.strip() else ""

    def with_provenance(self, fields: dict[str, object], summary: str | None = None) -> RewardProgram:
        head = summary if summary is not None else self.docstring.split(PROVENANCE_MARKER)[0].strip()
        block = "\n".join(f"  {k}: {v}" for k, v in fields.items())
        return self.with_docstring(f"{head or 'Reward program.'}\n\n{PROVENANCE_MARKER}\n{block}")

    @property
    def provenance(self) -> dict[str, str]:
        return parse_provenance(self.docstring)

    @classmethod
    def from_file(cls, path: str | Path) -> RewardProgram:
        return cls(read_reward_file(path))


def read_reward_file(path: str | Path) -> str:
    """A reward file's text (UTF-8); a missing, unreadable or non-UTF-8 file is a ProgramError."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ProgramError(f"cannot read reward file {path}: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProgramError(f"reward file {path} is not UTF-8 text (byte {exc.start})") from None


def format_params(params: dict[str, float]) -> str:
    if not params:
        return "PARAMS = {}"
    items = ", ".join(f'"{k}": {_fmt_number(v)}' for k, v in params.items())
    one_line = f"PARAMS = {{{items}}}"
    if len(one_line) <= 96:
        return one_line
    inner = "\n".join(f'    "{k}": {_fmt_number(v)},' for k, v in params.items())
    return "PARAMS = {\n" + inner + "\n}"


def _fmt_number(v: float) -> str:
    v = float(v)
    if v == int(v) and abs(v) < 1e6:
        return f"{v:.1f}"
    return f"{v:.4g}"


def parse_provenance(docstring: str) -> dict[str, str]:
    if PROVENANCE_MARKER not in docstring:
        return {}
    out: dict[str, str] = {}
    for line in docstring.split(PROVENANCE_MARKER, 1)[1].splitlines():
        if ":" in line and line.startswith("  "):
            key, value = line.strip().split(":", 1)
            out[key.strip()] = value.strip()
    return out


def _strip_docstrings(tree: ast.Module) -> ast.Module:
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def _after_docstring_line(tree: ast.Module) -> int:
    body = tree.body
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
        return body[0].end_lineno or 0
    return 0


def _check_signature(fn: ast.FunctionDef, name: str) -> None:
    args = fn.args
    n = len(args.posonlyargs) + len(args.args)
    if n != 4 or args.vararg or args.kwonlyargs or args.kwarg:
        got = ", ".join(a.arg for a in args.posonlyargs + args.args)
        raise ProgramError(f"`{name}` must take exactly 4 arguments (s, a, s_next, p); it takes ({got})", fn.lineno)


def _obs_args(fn: ast.FunctionDef) -> set[str]:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return {names[0], names[2]} if len(names) == 4 else set()


def _param_arg(fn: ast.FunctionDef) -> str | None:
    names = [a.arg for a in fn.args.posonlyargs + fn.args.args]
    return names[3] if len(names) == 4 else None


# -- extraction from free text (LLM replies) ----------------------------------------------------
_THINK = re.compile(r"<(think|thinking|reasoning|reflection)>.*?</\1>", re.S | re.I)
_UNOPENED = re.compile(r"^.*?</(think|thinking|reasoning|reflection)>", re.S | re.I)
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.S)
_START = re.compile(r'^(\"\"\"|\'\'\'|PARAMS\s*=|def |import |from |[A-Za-z_]\w*\s*=)')


def strip_reasoning(text: str) -> str:
    """Drop <think>...</think>-style reasoning blocks, and everything before an unopened closing
    tag (models that start thinking without the opening tag) unless that would drop the code."""
    text = _THINK.sub("", text or "")
    rest = _UNOPENED.sub("", text, count=1)
    return rest if rest != text and ("def reward" in rest or "def reward" not in text) else text


def extract_program(text: str) -> RewardProgram:
    """Find the reward program in a reply: fenced or not, with reasoning and prose around it."""
    text = strip_reasoning(text)
    candidates = [body for lang, body in _FENCE.findall(text) if lang.lower() in ("", "python", "py", "python3")]
    candidates = [c for c in candidates if "def reward" in c]
    if not candidates and "def reward" in text:
        candidates = [_unfenced(text)]
    for body in reversed(candidates):
        source = _trim_to_parse(body)
        if source and "def reward" in source:
            return RewardProgram(source.strip() + "\n")
    if candidates:
        _ = RewardProgram(candidates[-1]).tree  # raises the syntax error with its line
    raise ProgramError("no reward program found in the reply (expected a `def reward(s, a, s_next, p)`)")


def _unfenced(text: str) -> str:
    lines = text.splitlines()
    reward_at = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("def reward"))
    start = reward_at
    while start > 0 and (
        _START.match(lines[start - 1]) or lines[start - 1].startswith((" ", "\t", "#", "}", ")", "]")) or not lines[start - 1].strip()
    ):
        start -= 1
    return "\n".join(lines[start:])


def _trim_to_parse(body: str) -> str | None:
    lines = body.rstrip().splitlines()
    while lines:
        src = "\n".join(lines)
        try:
            ast.parse(src)
            return src
        except SyntaxError:
            lines.pop()
    return None
