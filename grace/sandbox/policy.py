"""The sandbox policy as data: `sandbox/policy.toml` (shipped as `grace/_sandbox/policy.toml`).

The policy lists what reward code may reach: the names on `xp`, the builtins, the attributes
allowed per kind of object, and the default resource limits of each worker profile
(`Limits`).
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, fields, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import grace


def policy_dir() -> Path:
    """The directory holding policy.toml and the hostile corpus (installed wheel, then repo)."""
    pkg = Path(grace.__file__).resolve().parent
    for candidate in (pkg / "_sandbox", pkg.parent / "sandbox"):
        if (candidate / "policy.toml").is_file():
            return candidate
    raise FileNotFoundError(
        f"sandbox policy not found: looked for policy.toml in {pkg / '_sandbox'} and "
        f"{pkg.parent / 'sandbox'}"
    )


@dataclass(frozen=True)
class Policy:
    """The parsed policy (see sandbox/policy.toml for the meaning of each entry)."""

    xp_names: frozenset[str]
    xp_linalg: frozenset[str]
    xp_kwargs: frozenset[str]
    builtins: tuple[str, ...]
    forbidden_names: frozenset[str]
    attributes: dict[str, frozenset[str]]
    limits: dict[str, dict[str, Any]]

    @property
    def all_attributes(self) -> frozenset[str]:
        """Every attribute name allowed on some kind of object (fields excluded)."""
        out: set[str] = set(self.xp_names) | set(self.xp_linalg)
        for names in self.attributes.values():
            out |= names
        return frozenset(out)


@lru_cache(maxsize=4)
def load_policy(path: str | None = None) -> Policy:
    """Parse policy.toml (default: the one found by `policy_dir()`)."""
    file = Path(path) if path else policy_dir() / "policy.toml"
    data = tomllib.loads(file.read_text())
    return Policy(
        xp_names=frozenset(data["xp"]["names"]),
        xp_linalg=frozenset(data["xp"]["linalg"]),
        xp_kwargs=frozenset(data["xp"]["kwargs"]),
        builtins=tuple(data["builtins"]["names"]),
        forbidden_names=frozenset(data["builtins"]["forbidden"]),
        attributes={k: frozenset(v) for k, v in data["attributes"].items()},
        limits={k: dict(v) for k, v in data["limits"].items()},
    )


@dataclass(frozen=True)
class Limits:
    """Resource limits of one worker profile (defaults in sandbox/policy.toml [limits.*]).

    Memory sizes in MiB (0 = no limit), times in seconds.
    """

    timeout_s: float = 10.0
    cpu_s: int = 20
    memory_mb: int = 4096
    rss_watchdog_mb: int = 0
    file_size_mb: int = 16
    open_files: int = 256
    processes: int = 512
    output_mb: int = 64
    debug_chars: int = 20000
    startup_s: float = 60.0

    @classmethod
    def for_profile(cls, profile: str, **overrides: Any) -> Limits:
        """The policy's defaults for `profile` ("numpy" or "jax"), with overrides."""
        table = load_policy().limits.get(profile)
        if table is None:
            raise ValueError(f"unknown sandbox profile {profile!r}; use 'numpy' or 'jax'")
        known = {f.name for f in fields(cls)}
        return replace(cls(**{k: v for k, v in table.items() if k in known}), **overrides)
