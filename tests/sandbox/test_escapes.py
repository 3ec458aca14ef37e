"""The paths around the sandbox: program-text rewrites, exports, provenance, host-side limits,
printable output. Hostile inputs come from sandbox/corpus/ (see sandbox/README.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import traceback
from pathlib import Path

import pytest

from grace.export import export_program
from grace.program import (
    PARAM_ABS_MAX,
    SOURCE_LIMIT_BYTES,
    ProgramError,
    RewardProgram,
    printable,
)
from grace.sandbox.policy import policy_dir
from grace.tasks import get_task
from tests.conftest import DEMOS, ROOT, run_cli

CORPUS = policy_dir() / "corpus"
SMUGGLERS = ["docstring_smuggle", "params_smuggle", "params_continuation_smuggle", "docstring_continuation_smuggle"]
CARTPOLE = get_task("cartpole")


def _import_leaves_no_marker(text: str, tmp: Path) -> None:
    """Import `text` as a module in a fresh interpreter (cwd `tmp`); no marker file may appear."""
    (tmp / "candidate.py").write_text(text)
    res = subprocess.run([sys.executable, "-c", "import candidate"], cwd=tmp, capture_output=True, text=True,
                         timeout=60)
    markers = sorted(p.name for p in tmp.glob("grace_marker*"))
    assert markers == [], f"hidden code ran on import: {markers}\n{text}"
    assert res.returncode == 0, res.stderr


def _rewrites(program: RewardProgram) -> dict[str, str]:
    """Every text the project writes from a program: PARAMS write-back, provenance, exports."""
    attempts = {
        "with_params": lambda: program.with_params({"w": 2.5}).source,
        "with_provenance": lambda: program.with_provenance({"task": "cartpole", "fitness": "0.9"}).source,
        "best_reward": lambda: program.with_params({"w": 2.5}).with_provenance({"task": "cartpole"}).source,
        **{f"export-{t}": (lambda t=t: export_program(program, CARTPOLE, t)) for t in ("module", "imitation")},
    }
    out = {}
    for name, make in attempts.items():
        try:
            out[name] = make()
        except ProgramError as exc:
            assert str(exc), name
    return out


@pytest.mark.parametrize("name", SMUGGLERS)
def test_no_rewrite_or_export_makes_hidden_code_live(name, tmp_path):
    source = (CORPUS / f"{name}.py").read_text()
    program = RewardProgram(source)
    expected = source.splitlines()[0].split(": ")[1]
    if expected == "forbidden":
        with pytest.raises(ProgramError, match="must stand on lines of its own"):
            program.validate(CARTPOLE.schema)
    texts = _rewrites(program)
    if expected == "ok":  # valid programs: the rewrites happen, and keep the code inert
        assert {"with_params", "with_provenance", "best_reward"} <= set(texts), sorted(texts)
    for text in texts.values():
        _import_leaves_no_marker(text, tmp_path)


def test_the_marker_check_catches_a_line_based_rewrite(tmp_path):
    """Control: blanking the docstring's line (what export and best_reward.py did) runs the code."""
    lines = (CORPUS / "docstring_smuggle.py").read_text().splitlines()
    old = ["" if ln.startswith('"""Upright') or ln == '"""' else ln for ln in lines]
    (tmp_path / "old.py").write_text("\n".join(old) + "\n")
    subprocess.run([sys.executable, "-c", "import old"], cwd=tmp_path, capture_output=True, timeout=60)
    assert (tmp_path / "grace_marker_docstring").exists(), "the control did not run the hidden code"


def test_best_reward_of_a_run_keeps_smuggled_code_inert(tmp_path, monkeypatch):
    """...and the host parses the candidate's text once along the loop's evaluation path."""
    import grace
    from grace.config import EvolveConfig

    init = tmp_path / "init.py"
    source = (CORPUS / "params_continuation_smuggle.py").read_text() + f"# {tmp_path.name}\n"
    init.write_text(source)
    calls: list[str] = []  # parses outside the proposers (which mutate their own copy of a parent)
    real = ast.parse

    def counting(src, *args, **kwargs):
        if not any("/proposers/" in frame.filename for frame in traceback.extract_stack()):
            calls.append(src)
        return real(src, *args, **kwargs)

    monkeypatch.setattr(ast, "parse", counting)
    res = grace.evolve(EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(tmp_path / "r"),
                                    init=(str(init),), report=False).override(
        {"search.generations": 1, "search.population": 2, "search.islands": 1,
         "data.random_negative_episodes": 8}), progress=False)
    assert res.best_path is not None
    monkeypatch.undo()
    assert calls.count(source) == 1
    texts = [res.best_path.read_text()]
    from grace.search.archive import Archive

    archive = Archive(tmp_path / "r" / "archive.sqlite", create=False)
    texts += [r.best_source for r in archive.top(10)]
    archive.close()
    for text in texts:
        _import_leaves_no_marker(text, tmp_path)


# -- host-side limits and PARAMS ----------------------------------------------------------------------
BOMBS = {
    "parser_bomb_sum": "more than 800 tokens",
    "parser_bomb_unary": "more than 800 tokens",
    "parser_bomb_nesting": "nested more than",
    "params_huge_int": "out of range",
    "params_inf": "is not finite",
    "params_twice": "assigned more than once",
    "params_computed_key": "computed key",
    "module_level_call": "must be a constant",
    "cpu_bomb_module_level": "module-level While",
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_hostile_texts_are_program_errors_with_a_reason(name):
    program = RewardProgram((CORPUS / f"{name}.py").read_text())
    with pytest.raises(ProgramError, match=BOMBS[name]) as info:
        program.validate(CARTPOLE.schema)
    assert info.value.line is None or info.value.line >= 1
    for attr in ("program_id", "size"):  # identity never raises anything but ProgramError
        try:
            getattr(program, attr)
        except ProgramError:
            pass


def test_source_size_cap_and_unreadable_files(tmp_path):
    big = "def reward(s, a, s_next, p):\n    return 0.0\n" + "# padding\n" * (SOURCE_LIMIT_BYTES // 10)
    with pytest.raises(ProgramError, match=f"the limit is {SOURCE_LIMIT_BYTES}"):
        RewardProgram(big).validate()
    (tmp_path / "big.py").write_text(big)
    with pytest.raises(ProgramError, match="limited to"):
        RewardProgram.from_file(tmp_path / "big.py")
    (tmp_path / "latin1.py").write_bytes("# caf\xe9\ndef reward(s, a, s_next, p):\n    return 0.0\n".encode("latin-1"))
    with pytest.raises(ProgramError, match="not UTF-8"):
        RewardProgram.from_file(tmp_path / "latin1.py")
    with pytest.raises(ProgramError, match="null bytes"):
        RewardProgram("def reward(s, a, s_next, p):\n    return 0.0\x00\n").validate()


def test_params_write_back_refuses_bad_values():
    program = RewardProgram('PARAMS = {"w": 1.0}\n\n\ndef reward(s, a, s_next, p):\n    return p["w"]\n')
    for bad in (float("inf"), float("nan"), 10 * PARAM_ABS_MAX):
        with pytest.raises(ProgramError, match="not finite or out of range"):
            program.with_params({"w": bad})
    with pytest.raises(ProgramError, match="identifier"):
        program.with_params({"w x": 1.0})
    costly = RewardProgram('PARAMS = {"cost_e": 0.1}\n\n\ndef reward(s, a, s_next, p):\n    return -p["cost_e"]\n')
    assert costly.with_params({"cost_e": 0.0}).params == {"cost_e": 0.0}
    with pytest.raises(ProgramError, match="cost weights and must be >= 0"):
        costly.with_params({"cost_e": -0.5})
    with pytest.raises(ProgramError, match="cost weights"):
        RewardProgram('PARAMS = {"cost_e": -1.0}\n\n\ndef reward(s, a, s_next, p):\n    return 0.0\n').validate()


def test_rewrites_are_exact_and_revalidated():
    source = textwrap.dedent('''\
        """Doc with a backslash \\\\ and an escape \x1b[2J and quotes \\"\\"\\"."""
        PARAMS = {"w": 1.0}  # trailing comment


        def reward(s, a, s_next, p):
            return p["w"] * s_next.pole_angle  # größe
        ''')
    program = RewardProgram(source).validate(CARTPOLE.schema)
    fitted = program.with_params({"w": 0.123456})
    assert fitted.params == {"w": 0.1235} and fitted.logic_dump == program.logic_dump
    assert "# trailing comment" in fitted.source and "# größe" in fitted.source
    doc = 'A "quoted" \\ text with """ triple quotes, \x07 bell and \u202e bidi'
    again = fitted.with_docstring(doc)
    assert again.tree.body[0].value.value == doc + "\n" and again.params == fitted.params
    assert again.program_id == program.program_id


def test_trees_are_parsed_once_per_source(monkeypatch):
    calls: list[str] = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda src, *a, **k: (calls.append(src), real(src, *a, **k))[1])
    source = "def reward(s, a, s_next, p):\n    return s_next.pole_angle  # parse-once probe 7f3a\n"
    for _ in range(3):
        p = RewardProgram(source)
        p.validate(CARTPOLE.schema)
        _ = (p.program_id, p.size, p.params, p.normalised)
    assert calls.count(source) == 1


def test_worker_compile_parses_once(monkeypatch):
    from grace.sandbox.compile import compile_reward

    calls: list[str] = []
    real = ast.parse
    monkeypatch.setattr(ast, "parse", lambda src, *a, **k: (calls.append(src), real(src, *a, **k))[1])
    source = "def reward(s, a, s_next, p):\n    return s_next.pole_angle  # worker parse-once probe 91c2\n"
    compile_reward(source, CARTPOLE.schema)
    assert calls.count(source) == 1


# -- provenance never imports --------------------------------------------------------------------------
def _evil_task(tmp_path: Path) -> tuple[Path, Path]:
    marker = tmp_path / "imported_marker"
    (tmp_path / "evil_env.py").write_text(f"open({str(marker)!r}, 'w').write('imported')\n\ndef make_env():\n    raise SystemExit\n")
    toml = (ROOT / "examples/tasks/point_reach.toml").read_text()
    toml = toml.replace('env = "point_reach:make_env"', 'env = "evil_env:make_env"')
    (tmp_path / "evil.toml").write_text(toml)
    reward = tmp_path / "reward.py"
    reward.write_text(f'"""Reward.\n\ngrace provenance:\n  task: {tmp_path / "evil.toml"}\n  demos: {DEMOS / "cartpole.npz"}\n"""\n\n\n'
                      "def reward(s, a, s_next, p):\n    return 0.0\n")
    return reward, marker


@pytest.mark.parametrize("command", ["eval", "export"])
def test_provenance_never_loads_a_task_file(command, tmp_path):
    reward, marker = _evil_task(tmp_path)
    extra = ["-o", str(tmp_path / "out.py")] if command == "export" else []
    res = run_cli(command, str(reward), *extra)
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "not a built-in task" in lines[0] and "--task" in lines[0], res.stderr
    assert "Traceback" not in res.stderr and not marker.exists()


def test_provenance_may_name_a_built_in_task(tmp_path):
    reward = tmp_path / "reward.py"
    reward.write_text('"""Reward.\n\ngrace provenance:\n  task: cartpole\n"""\n\n\ndef reward(s, a, s_next, p):\n'
                      "    return 1.0 - xp.abs(s_next.pole_angle)\n")
    res = run_cli("export", str(reward), "-o", str(tmp_path / "sub" / "out.py"))
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "sub" / "out.py").is_file()


# -- printable output ----------------------------------------------------------------------------------
def test_printable_strips_escapes_and_controls():
    hostile = ("ok\x1b[2J\x1b[H clear \x1b]0;title\x07 title \x1b]52;c;SGVsbG8=\x07 clip \x1b]52;c;AAAA\x1b\\ st "
               "\x9b31m c1 \x00nul \x08bs \u202eevil\u202c größe\n\tend")
    out = printable(hostile)
    assert out == "ok clear  title  clip  st 31m c1 nul bs evil größe\n\tend"
    assert all(ch in "\n\t" or (ord(ch) >= 32 and not 0x7F <= ord(ch) < 0xA0) for ch in out)


def test_cli_errors_are_printable(tmp_path):
    name = tmp_path / "r\x1b]0;pwned\x07\x1b[2J.py"
    res = run_cli("eval", str(name), "--task", "cartpole")
    assert res.returncode == 2 and "\x1b" not in res.stderr and "\x07" not in res.stderr
    assert res.stderr.startswith("error: ") and "does not exist" in res.stderr


def test_hostile_init_files_are_recorded_invalid_and_the_run_resumes(tmp_path):
    import sqlite3

    import grace
    from grace.config import EvolveConfig

    names = ["parser_bomb_sum", "parser_bomb_unary", "params_huge_int", "params_inf", "params_twice"]
    inits = [CORPUS / f"{n}.py" for n in names]
    (tmp_path / "big.py").write_text("# pad\n" * (SOURCE_LIMIT_BYTES // 6 + 10) + "def reward(s, a, s_next, p):\n    return 0.0\n")
    (tmp_path / "latin1.py").write_bytes(b"# caf\xe9\ndef reward(s, a, s_next, p):\n    return 0.0\n")
    inits += [tmp_path / "big.py", tmp_path / "latin1.py"]
    run = tmp_path / "r"
    grace.evolve(EvolveConfig(task="cartpole", demos=str(DEMOS / "cartpole.npz"), out=str(run), init=tuple(map(str, inits)),
                              report=False).override({"search.generations": 1, "search.population": 4,
                                                      "search.islands": 2, "data.random_negative_episodes": 8}),
                 progress=False)
    db = sqlite3.connect(run / "archive.sqlite")
    rows = db.execute("SELECT slot, status, error FROM programs WHERE round=0 AND generation=0 ORDER BY slot").fetchall()
    db.close()
    assert len(rows) == 8
    for slot, status, error in rows[: len(inits)]:
        assert status == "invalid" and error, (slot, status, error)
    assert "more than 800 tokens" in rows[0][2] and "not finite" in rows[3][2] and "not UTF-8" in rows[6][2]
    res = run_cli("evolve", "--resume", str(run), "--generations", "2", "--quiet")
    assert res.returncode == 0, res.stderr
