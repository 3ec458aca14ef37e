"""Structured errors of the sandbox: `SandboxError(kind, message, line)`."""

from __future__ import annotations

import traceback
from typing import Any

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
