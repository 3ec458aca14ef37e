"""Bad input through the CLI: each case exits 2 with exactly one `error:` line, no traceback,
and nothing is inflated before its declared size is checked."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import DEMOS, ROOT, run_cli

CARTPOLE = dict(np.load(DEMOS / "cartpole.npz"))
PENDULUM = dict(np.load(DEMOS / "pendulum.npz"))
POINT_TOML = (ROOT / "examples/tasks/point_reach.toml").read_text()


def _npz(path: Path, base: dict[str, np.ndarray], **changes: np.ndarray | None) -> None:
    arrays = {**base, **changes}
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})


def _with(base: dict[str, np.ndarray], key: str, row: int, value: float, dtype=None) -> np.ndarray:
    arr = base[key].astype(dtype or base[key].dtype, copy=True)
    arr[row] = value
    return arr


def _truncated(p: Path) -> None:
    raw = (DEMOS / "cartpole.npz").read_bytes()
    p.write_bytes(raw[: len(raw) // 2])


def _corrupt(p: Path) -> None:
    raw = bytearray((DEMOS / "cartpole.npz").read_bytes())
    for i in range(2000, 2400):
        raw[i] ^= 0x55
    p.write_bytes(bytes(raw))


def _bad_header(p: Path) -> None:
    """obs.npy's header claims 10^9 rows; the member holds the real data only."""
    _npz(p, CARTPOLE)
    members = {}
    with zipfile.ZipFile(p) as z:
        for name in z.namelist():
            members[name] = z.read(name)
    shape = str(CARTPOLE["obs"].shape).encode()
    members["obs.npy"] = members["obs.npy"].replace(shape, str((10**9, 4)).encode().ljust(len(shape)), 1)
    with zipfile.ZipFile(p, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def _d4rl_ragged(p: Path) -> None:
    np.savez(p, observations=np.zeros((10, 4), np.float32), actions=np.zeros(9, np.int64),
             rewards=np.zeros(10), terminals=np.zeros(10, bool), timeouts=np.zeros(10, bool))


def _bad_hdf5(p: Path) -> None:
    p.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 200)


def _not_hf_folder(p: Path) -> None:
    p.mkdir()
    (p / "notes.txt").write_text("hello")


# (case id, builder, --task or None, a fragment of the expected message)
DEMO_CASES: list[tuple[str, Callable[[Path], None], str | None, str]] = [
    ("truncated", _truncated, None, "not a readable .npz"),
    ("corrupt", _corrupt, None, "not a readable .npz"),
    ("object-dtype", lambda p: _npz(p, CARTPOLE, obs=np.array([None] * 3, dtype=object)), None, "Python objects"),
    ("no-terminated", lambda p: _npz(p, CARTPOLE, terminated=None), None, "lacks terminated"),
    ("malformed-header", _bad_header, None, "malformed header"),
    ("empty-file", lambda p: p.write_bytes(b""), None, "is empty"),
    ("all-empty", lambda p: _npz(p, {}, obs=np.zeros((0, 4), np.float32), actions=np.zeros(0, np.int64),
                                  lengths=np.zeros(0, np.int64), terminated=np.zeros(0, bool),
                                  truncated=np.zeros(0, bool)), None, "no episodes"),
    ("zero-length-episode", lambda p: _npz(p, CARTPOLE, lengths=_with(CARTPOLE, "lengths", 0, 0),
                                           obs=CARTPOLE["obs"][: len(CARTPOLE["obs"]) - int(CARTPOLE["lengths"][0])],
                                           ), None, "length 0"),
    ("nan-obs", lambda p: _npz(p, CARTPOLE, obs=_with(CARTPOLE, "obs", 5, np.nan)), None, "NaN or inf"),
    ("inf-obs", lambda p: _npz(p, CARTPOLE, obs=_with(CARTPOLE, "obs", 5, np.inf)), None, "NaN or inf"),
    ("nan-action", lambda p: _npz(p, PENDULUM, actions=_with(PENDULUM, "actions", 1, np.nan)), None, "NaN or inf"),
    ("bad-meta-json", lambda p: _npz(p, CARTPOLE, meta_json=np.array("{not json")), None, "meta_json"),
    ("string-lengths", lambda p: _npz(p, CARTPOLE, lengths=np.array(["a", "b"])), None, "dtype <U1"),
    ("fractional-action", lambda p: _npz(p, CARTPOLE, actions=_with(CARTPOLE, "actions", 3, 0.5, np.float64)),
     "cartpole", "not a whole number"),
    ("negative-action", lambda p: _npz(p, CARTPOLE, actions=_with(CARTPOLE, "actions", 3, -1)), "cartpole", "outside 0..1"),
    ("action-too-large", lambda p: _npz(p, CARTPOLE, actions=_with(CARTPOLE, "actions", 3, 2)), "cartpole", "outside 0..1"),
    ("continuous-far-out", lambda p: _npz(p, PENDULUM, actions=_with(PENDULUM, "actions", 2, 50.0)), "pendulum",
     "far outside the task's bounds"),
    ("width-mismatch", lambda p: _npz(p, PENDULUM), "cartpole", "width 3"),
    ("d4rl-ragged", _d4rl_ragged, None, "one row per transition"),
    ("d4rl-empty", lambda p: np.savez(p, observations=np.zeros((0, 4)), actions=np.zeros(0)), None, "no transitions"),
    ("hdf5-garbage", _bad_hdf5, None, "not a readable HDF5"),
    ("plain-folder", _not_hf_folder, None, "not a HuggingFace"),
    ("missing", lambda p: None, None, "does not exist"),
]


def _one_error_line(res: subprocess.CompletedProcess, fragment: str) -> None:
    text = (res.stdout + res.stderr).strip()
    assert res.returncode == 2, text
    assert "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    assert text.startswith("error:") and fragment in text, text


@pytest.mark.parametrize("case", DEMO_CASES, ids=[c[0] for c in DEMO_CASES])
def test_demos_show_refuses(tmp_path, case):
    name, build, task, fragment = case
    path = tmp_path / f"{name}.npz"
    build(path)
    res = run_cli("demos", "show", str(path), *(["--task", task] if task else []))
    _one_error_line(res, fragment)


@pytest.mark.parametrize("name", ["nan-obs", "negative-action", "truncated"])
def test_evolve_fails_fast_on_bad_demos(tmp_path, name):
    _, build, task, fragment = next(c for c in DEMO_CASES if c[0] == name)
    path = tmp_path / "bad.npz"
    build(path)
    out = tmp_path / "run"
    res = run_cli("evolve", "--task", task or "cartpole", "--demos", str(path), "--out", str(out),
                  "--generations", "1", "--quiet")
    _one_error_line(res, fragment)
    assert not out.exists(), "a refused run leaves no run directory behind"


def test_near_bounds_continuous_actions_are_counted_not_refused(tmp_path):
    path = tmp_path / "near.npz"
    _npz(path, PENDULUM, actions=_with(PENDULUM, "actions", 2, 2.5))
    res = run_cli("demos", "show", str(path), "--task", "pendulum", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["meta"]["actions_outside_bounds"] == 1


# -- task TOML --------------------------------------------------------------------------------------
TOML_CASES: list[tuple[str, Callable[[Path], None], str]] = [
    ("size-abc", lambda p: p.write_text(POINT_TOML.replace("size = 2", 'size = "abc"', 1)), "size must be an integer"),
    ("unknown-gym-id", lambda p: p.write_text('name = "x"\ndescription = "d"\nenv = "NoSuchEnv-v9"\n'
                                               '[action]\nkind = "discrete"\nn = 2\n[[fields]]\nname = "a"\n'),
     "not a registered gymnasium id"),
    ("binary", lambda p: p.write_bytes(b"\x00\xff\xfe\x89PNG\r\n\x1a\n garbage"), "not UTF-8"),
    ("missing-keys", lambda p: p.write_text('name = "x"\n'), "lacks: description, env, fields, action"),
    ("max-steps-string", lambda p: p.write_text(POINT_TOML.replace("max_steps = 100", 'max_steps = "long"')),
     "max_steps must be an integer"),
    ("low-string", lambda p: p.write_text(POINT_TOML.replace("low = -1.0", 'low = "min"')), "action.low must be a number"),
    ("shape-negative", lambda p: p.write_text(POINT_TOML.replace("shape = [2]", "shape = [-2]")), "action.shape"),
    ("fields-not-tables", lambda p: p.write_text(POINT_TOML.split("[[fields]]")[0].replace(
        "[action]", 'fields = [1, 2]\n[action]')), "fields[0] must be a [[fields]] table"),
    ("name-number", lambda p: p.write_text(POINT_TOML.replace('name = "point_reach"', "name = 7")), "name must be a string"),
    ("bad-kind", lambda p: p.write_text(POINT_TOML.replace('kind = "goal"', 'kind = "win"')), "kind must be"),
    ("not-toml", lambda p: p.write_text("name = \n"), "not valid TOML"),
]


@pytest.mark.parametrize("case", TOML_CASES, ids=[c[0] for c in TOML_CASES])
def test_task_toml_refuses(tmp_path, case):
    name, build, fragment = case
    path = tmp_path / f"{name}.toml"
    build(path)
    _one_error_line(run_cli("tasks", str(path)), fragment)


# -- reward files and output folders ----------------------------------------------------------------
BAD_UTF8 = b'def reward(s, a, s_next, p):\n    return s.pole_angle * 0  # caf\xe9\n'


@pytest.mark.parametrize("command", ["eval", "export", "diff", "init"])
def test_reward_file_not_utf8(tmp_path, command):
    bad = tmp_path / "bad.py"
    bad.write_bytes(BAD_UTF8)
    demos = str(DEMOS / "cartpole.npz")
    args = {
        "eval": ["eval", str(bad), "--task", "cartpole", "--demos", demos],
        "export": ["export", str(bad), "--task", "cartpole", "-o", str(tmp_path / "x.py")],
        "diff": ["diff", str(bad), str(bad), "--task", "cartpole", "--demos", demos],
        "init": ["evolve", "--task", "cartpole", "--demos", demos, "--init", str(bad),
                 "--out", str(tmp_path / "run"), "--generations", "1", "--quiet"],
    }[command]
    _one_error_line(run_cli(*args), "is not UTF-8 text")


def test_export_creates_missing_folders(tmp_path):
    out = tmp_path / "new" / "deeper" / "reward.py"
    src = ROOT / "grace/tasks/rewards/cartpole.py"
    res = run_cli("export", str(src), "--task", "cartpole", "-o", str(out))
    assert res.returncode == 0, res.stderr
    assert out.is_file() and "def reward_fn" in out.read_text()


def test_export_to_unwritable_place_is_one_line(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    src = ROOT / "grace/tasks/rewards/cartpole.py"
    _one_error_line(run_cli("export", str(src), "--task", "cartpole", "-o", str(blocker / "x.py")), "cannot write")


def test_demos_collect_creates_missing_folders(tmp_path):
    out = tmp_path / "a" / "b" / "demos.npz"
    res = run_cli("demos", "collect", "--task", "cartpole", "--episodes", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert out.is_file()


# -- zip bomb -----------------------------------------------------------------------------------------
BOMB_MB = 256


def _peak_rss_kb(*args: str, env: dict[str, str]) -> tuple[int, subprocess.CompletedProcess]:
    """Run the CLI in a fresh parent that reports its children's peak RSS (KiB on Linux)."""
    probe = (
        "import resource, subprocess, sys, json\n"
        "r = subprocess.run([sys.executable, '-m', 'grace.cli', *sys.argv[1:]], capture_output=True, text=True)\n"
        "print(json.dumps([resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode, r.stdout, r.stderr]))\n"
    )
    res = subprocess.run([sys.executable, "-c", probe, *args], cwd=ROOT, capture_output=True, text=True,
                         env=env, timeout=300)
    peak, rc, out, err = json.loads(res.stdout)
    return peak, subprocess.CompletedProcess(args, rc, out, err)


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss units")
def test_zip_bomb_refused_before_inflating(tmp_path):
    import os

    bomb = tmp_path / "bomb.npz"
    rows = BOMB_MB * 2**20 // 16
    np.savez_compressed(bomb, obs=np.zeros((rows, 4), np.float32), actions=np.zeros(rows - 1, np.int32),
                        lengths=np.array([rows - 1]), terminated=np.ones(1, bool), truncated=np.zeros(1, bool))
    assert bomb.stat().st_size < 2 * 2**20  # ~1000:1
    env = {**os.environ, "COLUMNS": "200"}
    base_kb, ok = _peak_rss_kb("demos", "show", str(DEMOS / "cartpole.npz"), "--max-mb", "64", env=env)
    assert ok.returncode == 0, ok.stderr
    peak_kb, res = _peak_rss_kb("demos", "show", str(bomb), "--max-mb", "64", env=env)
    _one_error_line(res, "over the 64 MiB limit")
    assert peak_kb < base_kb + 32 * 1024, (peak_kb, base_kb)  # nothing near 256+ MiB was inflated
