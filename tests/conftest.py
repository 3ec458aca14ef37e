from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEMOS = ROOT / "demos"
os.environ.setdefault("JAX_PLATFORMS", "cpu")


@pytest.fixture
def root() -> Path:
    return ROOT


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `grace` CLI in a subprocess (as a user would)."""
    return subprocess.run(
        [sys.executable, "-m", "grace.cli", *args], cwd=cwd or ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
