"""Every hostile program in sandbox/corpus/ is contained, with the outcome its header states.

Each file starts with `# expect: <kind>` (an error kind, or `ok`) and may say `# call: debug`.
For each file: the outcome kind matches, the pool still scores a good program afterwards, and
no file appeared in the working directory, the repository or /tmp (outside the pool's own
temp dir).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pytest

from grace.sandbox.policy import policy_dir
from grace.sandbox.pool import Limits, SandboxPool
from grace.tasks.spec import Field, ObsSchema

CORPUS = sorted((policy_dir() / "corpus").glob("*.py"))
SCHEMA = ObsSchema((Field("cart_position"), Field("cart_velocity"), Field("pole_angle"),
                    Field("pole_angular_velocity")))
GOOD = '''PARAMS = {"angle_limit": 0.21}


def reward(s, a, s_next, p):
    return 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
'''
KINDS = {"ok", "syntax", "forbidden", "timeout", "memory", "runtime", "bad_return", "crash"}


def header(path: Path) -> tuple[str, str]:
    text = path.read_text()
    m = re.match(r"# expect: (\w+)\n", text)
    assert m and m.group(1) in KINDS, f"{path.name}: first line must be '# expect: <kind>'"
    call = "debug" if re.search(r"^# call: debug$", text, re.M) else "evaluate"
    return m.group(1), call


@pytest.fixture(scope="module")
def pool():
    limits = Limits.for_profile("numpy", timeout_s=3.0)
    with SandboxPool(SCHEMA, n_workers=2, limits=limits) as p:
        rng = np.random.default_rng(0)
        s = rng.normal(size=(2000, 4))
        p.put("demo", {"s": s, "a": rng.integers(0, 2, 2000), "s_next": s * 0.5})
        yield p


def snapshot(pool: SandboxPool) -> set[str]:
    """Top-level entries of cwd, the repo and /tmp (outside the pool's dir).

    When the workers run as their own uid (host is root), only entries owned by that uid
    count: other processes on a shared machine may create files in /tmp meanwhile.
    """
    roots = {Path.cwd(), Path(__file__).resolve().parents[2], Path(tempfile.gettempdir()),
             Path("/var/tmp"), Path("/dev/shm")}
    own_uid = pool.worker_uid if pool.worker_uid not in (-1, os.geteuid()) else None
    seen: set[str] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for entry in os.scandir(root):
            if entry.path.startswith(pool.root):
                continue
            try:
                if own_uid is None or entry.stat(follow_symlinks=False).st_uid == own_uid:
                    seen.add(entry.path)
            except OSError:
                continue
    return seen


def test_corpus_is_big_enough():
    assert len(CORPUS) >= 20
    kinds = {header(p)[0] for p in CORPUS}
    assert {"forbidden", "timeout", "memory", "runtime", "bad_return"} <= kinds


@pytest.mark.parametrize("path", CORPUS, ids=[p.stem for p in CORPUS])
def test_corpus_program_is_contained(pool, path):
    expected, call = header(path)
    before = snapshot(pool)
    source = path.read_text()
    out = pool.debug(source, "demo") if call == "debug" else pool.evaluate(source, "demo")
    got = "ok" if out.ok else out.error.kind
    assert got == expected, f"{path.name}: expected {expected}, got {out.error or 'ok'}"
    if out.ok and call == "debug":
        assert len(out.value) <= pool.limits.debug_chars + 200
    if not out.ok:
        assert str(out.error).startswith(out.error.kind + ": ")
    good = pool.evaluate(GOOD, "demo")
    assert good.ok, f"pool broken after {path.name}: {good.error}"
    assert good.value[0].shape == (2000,)
    assert snapshot(pool) == before, f"{path.name} created files: {snapshot(pool) - before}"
