"""The sandbox policy as data: `sandbox/policy.toml` (shipped as `grace/_sandbox/policy.toml`).

The policy lists what reward code may reach: the names on `xp`, the builtins, the attributes
allowed per kind of object, and the default resource limits of each worker profile.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
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
