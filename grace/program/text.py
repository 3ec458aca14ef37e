"""Program text: PARAMS and string literals, token-exact spans, provenance lines, and
`printable` for anything untrusted on its way to a terminal."""

from __future__ import annotations

import ast
import copy
import io
import re

PROVENANCE_MARKER = "grace provenance:"


def format_params(params: dict[str, float]) -> str:
    if not params:
        return "PARAMS = {}"
    items = ", ".join(f'"{k}": {fmt_number(v)}' for k, v in params.items())
    one_line = f"PARAMS = {{{items}}}"
    if len(one_line) <= 96:
        return one_line
    inner = "\n".join(f'    "{k}": {fmt_number(v)},' for k, v in params.items())
    return "PARAMS = {\n" + inner + "\n}"


def fmt_number(v: float) -> str:
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


# -- helpers for rewriting ----------------------------------------------------------------------------
def is_string_expr(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


_DOC_OWNERS = (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_STATEMENTS = (ast.stmt, ast.excepthandler, ast.match_case)


def without_docstrings(node: ast.AST) -> ast.AST:
    """`node` without its docstrings (the first string statement of a module, def or class body; a
    body left empty gets `pass`), without touching `node` or copying it whole: shallow copies
    along the paths to the docstrings, every other subtree shared (only statements hold one)."""
    changes = {}
    for name, value in ast.iter_fields(node):
        if not isinstance(value, list):
            continue
        new = [without_docstrings(v) if isinstance(v, _STATEMENTS) else v for v in value]
        if name == "body" and isinstance(node, _DOC_OWNERS) and new and is_string_expr(new[0]):
            new = new[1:] or [ast.Pass()]
        if len(new) != len(value) or any(a is not b for a, b in zip(new, value, strict=False)):
            changes[name] = new
    if not changes:
        return node
    out = copy.copy(node)
    for name, value in changes.items():
        setattr(out, name, value)
    return out


def offset(source: str, lineno: int | None, col_bytes: int | None) -> int:
    """Character offset of (line, UTF-8 byte column) in `source`."""
    lines = io.StringIO(source, newline="").readlines()  # the tokenizer's line breaks only
    start = sum(len(ln) for ln in lines[: (lineno or 1) - 1])
    line = lines[(lineno or 1) - 1] if lines else ""
    return start + len(line.encode("utf-8")[: col_bytes or 0].decode("utf-8", "replace"))


def replace_span(source: str, node: ast.AST, text: str) -> str:
    start = offset(source, node.lineno, node.col_offset)  # type: ignore[attr-defined]
    end = offset(source, node.end_lineno, node.end_col_offset)  # type: ignore[attr-defined]
    return source[:start] + text + source[end:]


def string_literal(value: str) -> str:
    """A triple-quoted literal whose value is exactly `value`: plain, raw (backslashes kept as
    written), or escaped (control characters, quotes) where needed."""
    plain = all(ch in "\n\t" or ch.isprintable() for ch in value)
    if plain and '"' not in value[-1:] and '"""' not in value and not re.search(r'\\(?=\\*"|$)', value):
        return f'r"""{value}"""' if "\\" in value else f'"""{value}"""'
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == '"':
            out.append('\\"')
        elif ch in "\n\t" or ch.isprintable():
            out.append(ch)
        else:
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}" if ord(ch) < 65536 else f"\\U{ord(ch):08x}")
    return '"""' + "".join(out) + '"""'


def one_line(value: object) -> str:
    return " ".join(str(value).split())



# -- terminal output ---------------------------------------------------------------------------------
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[P^_X][^\x1b]*(?:\x1b\\)?|[@-Z\\-_])")
_BIDI = dict.fromkeys([*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F, 0x061C])


def printable(text: object) -> str:
    """`text` without terminal escape sequences, control characters (newlines and tabs kept) or
    bidirectional overrides: for anything from a reward program or an LLM before it is printed."""
    s = _ANSI.sub("", str(text)).translate(_BIDI)
    return "".join(ch for ch in s if ch in "\n\t" or not (ord(ch) < 32 or 0x7F <= ord(ch) < 0xA0))
