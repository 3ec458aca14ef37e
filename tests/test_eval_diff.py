"""`grace eval` / `grace diff` on hand-edited reward files."""

from __future__ import annotations

import json

import pytest

from grace.api import resolve_context, score_programs
from grace.program import RewardProgram
from tests.conftest import DEMOS, ROOT, run_cli

REF = ROOT / "grace/tasks/rewards/cartpole.py"
FLAGS = ["--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz")]


def test_eval_json_reference():
    res = run_cli("eval", str(REF), *FLAGS, "--json")
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    assert 0.0 < out["fitness"] <= 1.0 and 0.5 < out["accuracy"] <= 1.0 and out["auc"] > 0.8
    assert out["params"] == RewardProgram.from_file(REF).params


@pytest.mark.parametrize(("edit", "message"), [
    (("s_next.pole_angle", "s_next.pole_angel"), "line 7: unknown observation field s_next.pole_angel"),
    (('"""CartPole', 'import os\n"""CartPole'), "line 1: import statements are not allowed"),
    (("xp.abs(s_next.pole_angle)", "open('x')"), "line 7"),
    (("/ p[\"angle_limit\"]", "/ p[\"angle_limit\"] + 'oops'"), "line 7"),
    (("return upright", "return xp.log(-xp.abs(upright) - 1.0) + upright"), "bad_return"),
])
def test_eval_broken_edits_exit_2_with_precise_message(tmp_path, edit, message):
    edited = tmp_path / "edited.py"
    edited.write_text(REF.read_text().replace(*edit))
    res = run_cli("eval", str(edited), *FLAGS)
    assert res.returncode == 2, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0] and "Traceback" not in res.stderr, res.stderr


def test_debug_helper_output_reaches_feedback(tmp_path):
    src = REF.read_text() + (
        "\n\ndef debug(s, a, s_next, p):\n"
        "    return 'mean |angle| ' + str(xp.mean(xp.abs(s_next.pole_angle)))\n")
    program = RewardProgram(src)
    ctx = resolve_context(program, "cartpole", str(DEMOS / "cartpole.npz"), None)
    out = score_programs([program], ctx)[0]
    assert out.ok and out.debug_output.startswith("mean |angle| ")


def test_diff_side_by_side(tmp_path):
    edited = tmp_path / "edited.py"
    edited.write_text(REF.read_text().replace('"centre_weight": 0.5', '"centre_weight": 0.0'))
    res = run_cli("diff", str(REF), str(edited), *FLAGS)
    assert res.returncode == 0, res.stderr
    assert "fitness" in res.stdout and "centre_weight" in res.stdout and "accuracy_train" in res.stdout


def test_eval_from_provenance(tmp_path):
    prog = RewardProgram.from_file(REF).with_provenance(
        {"task": "cartpole", "demos": f"{DEMOS / 'cartpole.npz'} (sha256 x)"})
    f = tmp_path / "with_prov.py"
    f.write_text(prog.source)
    res = run_cli("eval", str(f), "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["fitness"] > 0
    f.write_text(RewardProgram.from_file(REF).source)
    res = run_cli("eval", str(f))
    assert res.returncode == 2 and "no task" in res.stderr
