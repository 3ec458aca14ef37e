"""Parsing reward programs with host-side limits (before anything recursive touches the text).

Source size, tokens per logical line (checked with the iterative tokenizer before `ast.parse`,
whose C parser recurses), then AST depth and node count. Every failure is a `ProgramError`,
never a RecursionError, MemoryError or ValueError in the host.
"""

from __future__ import annotations

import ast
import io
import tokenize
from typing import Any

# Host-side limits (candidates for a config field; see sandbox/README.md).
SOURCE_LIMIT_BYTES = 64 * 1024
"""Largest reward program accepted (UTF-8 bytes)."""
MAX_STATEMENT_TOKENS = 800
"""Tokens per logical line; checked before parsing (the parser itself recurses)."""
MAX_AST_DEPTH = 100
MAX_AST_NODES = 20_000
PARAM_ABS_MAX = 1e12
"""PARAMS values must be finite with |value| <= this."""


class ProgramError(ValueError):
    """A program breaks the contract. `str()` is one line a proposer or a user can act on.

    `kind` is the sandbox error kind it maps to: "syntax" (unparseable, or the contract's shape:
    reward, signatures, PARAMS, fields) or "forbidden" (statements or sizes the contract refuses).
    """

    def __init__(self, message: str, line: int | None = None, kind: str = "syntax") -> None:
        self.line = line
        self.reason = message
        self.kind = kind
        super().__init__(f"line {line}: {message}" if line else message)


# -- parsing with limits ---------------------------------------------------------------------------
def parse_source(source: str) -> ast.Module:
    """Parse a reward program after the host-side limits; every failure is a ProgramError."""
    if not isinstance(source, str):
        raise ProgramError(f"a program is text, got {type(source).__name__}")
    size = len(source.encode("utf-8", "replace"))
    if size > SOURCE_LIMIT_BYTES:
        raise ProgramError(f"the program is {size} bytes; the limit is {SOURCE_LIMIT_BYTES}", kind="forbidden")
    _check_statement_tokens(source)
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ProgramError(f"syntax error: {exc.msg}", exc.lineno) from None
    except (RecursionError, MemoryError):
        raise ProgramError("the program is nested too deeply to parse", kind="forbidden") from None
    except ValueError as exc:  # null bytes, integer literals over the digit limit
        raise ProgramError(f"cannot parse the program: {str(exc)[:200]}") from None
    _check_tree_size(tree)
    return tree


def _check_statement_tokens(source: str) -> None:
    count = 0
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.NEWLINE, tokenize.ENDMARKER):
                count = 0
            elif tok.type not in (tokenize.NL, tokenize.COMMENT, tokenize.INDENT, tokenize.DEDENT):
                count += 1
                if count > MAX_STATEMENT_TOKENS:
                    raise ProgramError(f"a statement has more than {MAX_STATEMENT_TOKENS} tokens; split it "
                                       "into smaller expressions", tok.start[0], "forbidden")
    except (tokenize.TokenError, SyntaxError):
        return  # ast.parse reports the syntax error with its line


def _check_tree_size(tree: ast.Module) -> None:
    stack: list[tuple[ast.AST, int]] = [(tree, 0)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if depth > MAX_AST_DEPTH:
            raise ProgramError(f"the program is nested more than {MAX_AST_DEPTH} levels deep",
                               getattr(node, "lineno", None), "forbidden")
        if nodes > MAX_AST_NODES:
            raise ProgramError(f"the program has more than {MAX_AST_NODES} syntax nodes", kind="forbidden")
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


class SourceCache:
    """Values kept per program text (the key's first item; the rest of the key may be anything
    hashable), oldest out first once the texts held would pass `limit` characters; a text longer
    than `limit` is not kept."""

    def __init__(self, limit: int) -> None:
        self.items: dict[tuple, Any] = {}
        self.held, self.limit = 0, limit

    def get(self, key: tuple) -> Any:
        return self.items.get(key)

    def put(self, key: tuple, value: Any) -> None:
        if key not in self.items:
            if len(key[0]) > self.limit:
                return
            while self.items and self.held + len(key[0]) > self.limit:
                self.held -= len(next(iter(self.items))[0])
                self.items.pop(next(iter(self.items)))
            self.held += len(key[0])
        self.items[key] = value


_TREES = SourceCache(1 << 20)
"""(source,) -> its parsed module, or the ProgramError parsing it raised."""


def cached_tree(source: str) -> ast.Module:
    hit = _TREES.get((source,)) if isinstance(source, str) else None
    if hit is None:
        try:
            hit = parse_source(source)
        except ProgramError as exc:
            hit = exc
        _TREES.put((source,), hit)
    if isinstance(hit, ProgramError):
        raise ProgramError(hit.reason, hit.line, hit.kind)
    return hit
