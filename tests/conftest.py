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


NO_PPO_SELECT = ("--set", "ppo.select_top=0")
"""PPO in the loop (on by default) trains PPO after every round: a minute of CPU per run. Tests of
other things switch it off; tests of it are marked `ppo_select` (and pass their own settings)."""


@pytest.fixture(autouse=True)
def _no_ppo_selection_unless_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if request.node.get_closest_marker("ppo_select") is None:
        from grace.search import ppo_select

        monkeypatch.setattr(ppo_select, "enabled", lambda cfg, task: False)


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the `grace` CLI in a subprocess (as a user would); `grace evolve` (and its --resume:
    the key is resumable) without PPO in the loop unless the arguments set `ppo.select_top`
    themselves (see NO_PPO_SELECT)."""
    if args and args[0] == "evolve" and not any("select_top" in a for a in args):
        args = (*args, *NO_PPO_SELECT)
    return subprocess.run(
        [sys.executable, "-m", "grace.cli", *args], cwd=cwd or ROOT, capture_output=True, text=True,
        timeout=timeout, env={**os.environ, "COLUMNS": "200", **(env or {})},
    )
