from __future__ import annotations

import json

import pytest

from tests.conftest import DEMOS, run_cli

COMMANDS = ["evolve", "show", "eval", "diff", "train", "export", "report", "tasks", "demos", "demos collect", "demos show"]


@pytest.mark.parametrize("cmd", COMMANDS)
def test_help_everywhere(cmd):
    res = run_cli(*cmd.split(), "--help")
    assert res.returncode == 0, res.stderr
    assert "Usage" in res.stdout


def test_demos_show_json():
    res = run_cli("demos", "show", str(DEMOS / "cartpole.npz"), "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert data["episodes"] == 8 and data["return_mean"] == 500.0


def test_demos_collect(tmp_path):
    out = tmp_path / "mc.npz"
    res = run_cli("demos", "collect", "--task", "mountaincar", "--episodes", "2", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.exists() and "expert return" in res.stdout


def test_user_errors_exit_2_with_one_line(tmp_path):
    cases = [
        ("demos", "collect", "--task", "nope", "--out", str(tmp_path / "x.npz")),
        ("demos", "collect", "--task", "hopper", "--train-steps", "-1", "--out", str(tmp_path / "x.npz")),
        ("demos", "show", str(tmp_path / "missing.npz")),
        ("tasks", "nope"),
        ("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"), "--proposer", "magic", "--out", str(tmp_path / "r")),
        ("evolve", "--task", "cartpole", "--out", str(tmp_path / "r")),
        ("evolve", "--resume", str(tmp_path / "nothing")),
        ("eval", str(tmp_path / "missing.py"), "--task", "cartpole"),
    ]
    for args in cases:
        res = run_cli(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)


def test_tasks_listing():
    res = run_cli("tasks")
    assert res.returncode == 0 and "cartpole_fixed" in res.stdout
    res = run_cli("tasks", "pendulum")
    assert "angular_velocity" in res.stdout
