"""Sandbox: restricted compile (in-process) and the worker pool, incl. defence in depth.

The defence-in-depth tests run UNRESTRICTED Python inside a worker on purpose (through the
test-only trusted function `run_unrestricted` below, which the worker imports from this module)
to show that the OS-level limits hold even if the restricted compiler were bypassed.
"""

from __future__ import annotations

import asyncio
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pytest

from grace.sandbox.compile import SandboxError, SandboxUnavailable, check_result, compile_reward
from grace.sandbox.pool import Limits, SandboxPool, clean_env
from grace.tasks.spec import Field, ObsSchema

REPO = Path(__file__).resolve().parents[2]
SCHEMA = ObsSchema((Field("cart_position"), Field("cart_velocity"), Field("pole_angle"),
                    Field("pole_angular_velocity")))
CARTPOLE = '''"""CartPole: keep the pole upright."""
PARAMS = {"angle_limit": 0.21, "centre_weight": 0.1}


def helper(x, k=2):
    return x * k


def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    centred = -p["centre_weight"] * xp.abs(s_next.cart_position)
    total = 0.0
    for i in range(2):
        total += helper(upright, k=1) * 0.5
    first, second = 1.0, [2.0, 3.0]
    names = [n for n in ["a", "b"] if n != "b"]
    d = {}
    d["centred"] = centred
    speed = xp.linalg.norm(s.raw[..., 0:2], axis=-1) + 0 * len(names) * first
    if xp.max(speed) > 1e9:
        total = total - 1.0
    return total + d.get("centred"), {"upright": upright, "centred": centred}


def debug(s, a, s_next, p):
    return "mean angle " + str(round(float(xp.mean(s_next.pole_angle)), 3))
'''


def direct_cartpole(s: np.ndarray, s_next: np.ndarray) -> np.ndarray:
    return 1.0 - np.abs(s_next[:, 2]) / 0.21 - 0.1 * np.abs(s_next[:, 0])


def make_data(n: int = 256, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 4)) * 0.1
    return {"s": s, "a": rng.integers(0, 2, n), "s_next": s + rng.normal(size=(n, 4)) * 0.01}


def run_unrestricted(ctx, compiled, code: str):
    """TEST ONLY: exec raw Python in the worker (bypasses the restricted compiler on purpose)."""
    ns: dict = {"ctx": ctx}
    exec(code, ns)  # noqa: S102
    return ns.get("result")


UNRESTRICTED = "tests.sandbox.test_sandbox:run_unrestricted"


# ----------------------------------------------------------------------------- in-process

def test_compile_and_call_contract():
    prog = compile_reward(CARTPOLE, SCHEMA)
    d = make_data()
    total, comps = prog(d["s"], d["a"], d["s_next"])
    assert total.shape == (256,) and total.dtype == np.float64
    np.testing.assert_allclose(total, direct_cartpole(d["s"], d["s_next"]))
    assert set(comps) == {"upright", "centred"}
    assert prog.params == {"angle_limit": 0.21, "centre_weight": 0.1}
    total2, _ = prog(d["s"], d["a"], d["s_next"], {"centre_weight": 0.0})
    np.testing.assert_allclose(total2, 1.0 - np.abs(d["s_next"][:, 2]) / 0.21)
    assert prog.debug(d["s"], d["a"], d["s_next"]).startswith("mean angle ")


def test_scalar_total_broadcasts_and_plain_return():
    prog = compile_reward("def reward(s, a, s_next, p):\n    return 1.0\n", SCHEMA)
    d = make_data(8)
    total, comps = prog(d["s"], d["a"], d["s_next"])
    assert total.shape == (8,) and comps == {} and prog.debug(d["s"], d["a"], d["s_next"]) is None


@pytest.mark.parametrize(
    ("body", "kind", "fragment"),
    [
        ("import os", "forbidden", "import statements are not allowed"),
        ("x = ().__class__", "forbidden", "'__class__'"),
        ("x = (i for i in []).gi_frame", "forbidden", "'gi_frame'"),
        ("x = '{0.__class__}'.format(s)", "forbidden", "'format'"),
        ("x = s.raw.tofile", "forbidden", "'tofile'"),
        ("x = open('f')", "forbidden", "'open'"),
        ("x = 1 +", "syntax", "invalid syntax"),
    ],
)
def test_compile_errors_are_readable(body, kind, fragment):
    src = f"def reward(s, a, s_next, p):\n    {body}\n    return 0.0\n"
    with pytest.raises(SandboxError) as info:
        compile_reward(src, SCHEMA)
    err = info.value
    assert err.kind == kind and err.line == 2, str(err)
    assert fragment in str(err) and str(err).startswith(f"{kind}: line 2: ")


def test_runtime_error_has_program_line():
    src = "def reward(s, a, s_next, p):\n    x = 1.0\n    return x / 0\n"
    d = make_data(4)
    with pytest.raises(SandboxError) as info:
        compile_reward(src, SCHEMA)(d["s"], d["a"], d["s_next"])
    assert info.value.kind == "runtime" and info.value.line == 3
    assert "ZeroDivisionError" in str(info.value)


def test_unknown_field_lists_the_fields():
    src = "def reward(s, a, s_next, p):\n    return s.nope\n"
    d = make_data(4)
    with pytest.raises(SandboxError) as info:
        compile_reward(src, SCHEMA)(d["s"], d["a"], d["s_next"])
    assert "nope" in str(info.value)


def test_check_result_reports_nonfinite_and_shapes():
    with pytest.raises(SandboxError, match="2 NaN and 1 inf"):
        check_result(np.array([np.nan, np.nan, np.inf, 1.0]), None, 4)
    with pytest.raises(SandboxError, match="shape"):
        check_result(np.zeros((4, 2)), None, 4)
    with pytest.raises(SandboxError, match="component"):
        check_result(np.zeros(4), {"x": np.zeros(3)}, 4)
    with pytest.raises(SandboxError, match="numeric"):
        check_result(np.array(["a"] * 4), None, 4)
    total, comps = check_result(np.float32(2.0), {"c": np.ones(4, bool)}, 4)
    assert total.tolist() == [2.0] * 4 and comps["c"].dtype == np.float64


def test_inplace_ops_do_not_mutate_inputs():
    src = ("def reward(s, a, s_next, p):\n    x = s_next.pole_angle\n    x += 1.0\n"
           "    y = s.raw * 1.0\n    y[0, 0] = 7.0\n    return x + y[:, 0] * 0\n")
    d = make_data(4)
    before = d["s_next"].copy()
    compile_reward(src, SCHEMA)(d["s"], d["a"], d["s_next"])
    np.testing.assert_array_equal(d["s_next"], before)


def test_sandbox_error_str():
    assert str(SandboxError("forbidden", "import statements are not allowed", 3)) == \
        "forbidden: line 3: import statements are not allowed"
    assert str(SandboxError("timeout", "too slow")) == "timeout: too slow"
    with pytest.raises(ValueError):
        SandboxError("nope", "x")


def test_clean_env_drops_secrets(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("JAX_SECRET_TOKEN", "x")
    env = clean_env("/tmp/w", "jax", {"OPENAI_API_KEY": "sk-x", "FOO": "1"})
    assert env["JAX_PLATFORMS"] == "cpu" and env["HOME"] == "/tmp/w" and env["FOO"] == "1"
    assert "JAX_SECRET_TOKEN" not in env and "OPENAI_API_KEY" not in env


def test_no_resource_module_refuses(monkeypatch):
    monkeypatch.setitem(sys.modules, "resource", None)
    with pytest.raises(SandboxUnavailable, match="POSIX"):
        SandboxPool(SCHEMA, n_workers=1)


# ----------------------------------------------------------------------------- pool

@pytest.fixture(scope="module")
def pool():
    os.environ["OPENAI_API_KEY"] = "sk-test-must-not-leak"
    os.environ["GRACE_FAKE_TOKEN"] = "must-not-leak"
    try:
        p = SandboxPool(SCHEMA, n_workers=2, limits=Limits.for_profile("numpy", timeout_s=5.0),
                        pythonpath=[str(REPO)], preload=("tests.sandbox.test_sandbox",))
    finally:
        del os.environ["OPENAI_API_KEY"], os.environ["GRACE_FAKE_TOKEN"]
    p.put("demo", make_data(1000))
    yield p
    p.close()


def assert_healthy(pool: SandboxPool) -> None:
    out = pool.evaluate(CARTPOLE, "demo")
    assert out.ok, out.error
    assert out.value[0].shape == (1000,)


def test_pool_evaluate_matches_direct(pool):
    d = make_data(1000)
    out = pool.evaluate(CARTPOLE, "demo")
    assert out.ok and out.error is None and out.seconds > 0
    np.testing.assert_allclose(out.value[0], direct_cartpole(d["s"], d["s_next"]))
    dbg = pool.debug(CARTPOLE, "demo")
    assert dbg.ok and dbg.value.startswith("mean angle")


def test_pool_reports_compile_errors(pool):
    out = pool.evaluate("def reward(s, a, s_next, p):\n    import os\n", "demo")
    assert not out.ok and out.error.kind == "forbidden" and out.error.line == 2
    out = pool.evaluate("def reward(s, a, s_next, p):\n    return s.raw\n", "demo")
    assert out.error.kind == "bad_return"


def test_acall_runs_concurrently(pool):
    async def main():
        return await asyncio.gather(*[pool.aevaluate(CARTPOLE, "demo") for _ in range(6)])

    outs = asyncio.run(main())
    assert all(o.ok for o in outs)


def test_timeout_hard_kills_and_respawns(pool):
    pids = set(pool.worker_pids)
    t0 = time.monotonic()
    out = pool.evaluate("def reward(s, a, s_next, p):\n    while True:\n        pass\n", "demo",
                        timeout=1.0)
    assert out.error.kind == "timeout" and time.monotonic() - t0 < 4
    dead = pids - set(pool.worker_pids)
    assert len(dead) == 1
    pid = dead.pop()
    assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()
    assert_healthy(pool)
    assert_healthy(pool)  # the respawned worker got the resident data again


def test_call_generic_function(pool):
    out = pool.call(UNRESTRICTED, None, "result = sorted(ctx.data)")
    assert out.ok and out.value == ["demo"]


# ----------------------------------------------------------------------------- defence in depth

def test_unrestricted_env_is_scrubbed(pool):
    out = pool.call(UNRESTRICTED, None, "import os\nresult = (dict(os.environ), os.getcwd())")
    env, cwd = out.value
    assert "OPENAI_API_KEY" not in env and "GRACE_FAKE_TOKEN" not in env
    assert set(env) <= {"PATH", "HOME", "TMPDIR", "LANG", "OPENBLAS_NUM_THREADS",
                        "OMP_NUM_THREADS", "MKL_NUM_THREADS", "PYTHONDONTWRITEBYTECODE",
                        "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}
    assert os.path.realpath(cwd) in {os.path.realpath(w) for w in pool.workdirs}
    assert env["HOME"] == cwd
    # the exec-time environment (what /proc/self/environ shows) is clean too
    out = pool.call(UNRESTRICTED, None, """
try:
    result = open('/proc/self/environ', 'rb').read()
except OSError as e:
    result = b'unreadable'
""")
    assert b"sk-test-must-not-leak" not in out.value


def test_unrestricted_rlimits_are_set(pool):
    out = pool.call(UNRESTRICTED, None, """
import resource
result = {n: resource.getrlimit(getattr(resource, n))[0]
          for n in ('RLIMIT_AS', 'RLIMIT_FSIZE', 'RLIMIT_NOFILE', 'RLIMIT_CORE', 'RLIMIT_NPROC')}
import os
result['uid'] = os.geteuid()
""")
    lim = pool.limits
    r = out.value
    assert r["RLIMIT_AS"] == lim.memory_mb * 2**20
    assert r["RLIMIT_FSIZE"] == lim.file_size_mb * 2**20
    assert r["RLIMIT_NOFILE"] == lim.open_files and r["RLIMIT_CORE"] == 0
    if r["uid"] != 0:
        assert r["RLIMIT_NPROC"] == lim.processes
    if os.geteuid() == 0:
        assert r["uid"] == 65534 == pool.worker_uid


def test_unrestricted_memory_limit(pool):
    out = pool.call(UNRESTRICTED, None, "import numpy as np\nx = np.ones(2**30)\nresult = 1")
    assert out.error.kind == "memory", out.error
    out = pool.call(UNRESTRICTED, None, "x = bytearray(8 * 2**30)")
    assert out.error.kind == "memory", out.error
    assert_healthy(pool)


def test_unrestricted_file_size_limit(pool):
    out = pool.call(UNRESTRICTED, None, "open('big.bin', 'wb').write(b'x' * (40 * 2**20))")
    assert out.error.kind == "runtime" and "File too large" in out.error.message


@pytest.mark.skipif(os.geteuid() != 0, reason="uid drop happens only when the host runs as root")
def test_unrestricted_cannot_write_outside_workdir(pool):
    target = REPO / "SANDBOX_ESCAPE_PROBE"
    out = pool.call(UNRESTRICTED, None, f"open({str(target)!r}, 'w').write('x')")
    assert out.error.kind == "runtime" and "Permission denied" in out.error.message
    assert not target.exists()
    out = pool.call(UNRESTRICTED, None, "open('inside.txt', 'w').write('ok')\nresult = 1")
    assert out.ok


def test_unrestricted_timeout_kills_process_group(pool):
    marker = "987.654"
    out = pool.call(UNRESTRICTED, None, f"""
import signal, subprocess
signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(['sleep', '{marker}'])
while True:
    pass
""", timeout=1.5)
    assert out.error.kind == "timeout"
    time.sleep(0.2)
    survivors = []
    for proc in Path("/proc").iterdir():
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                survivors.append(proc.name)
        except OSError:
            continue
    assert survivors == []
    assert_healthy(pool)


def test_unrestricted_crash_is_contained(pool):
    out = pool.call(UNRESTRICTED, None, "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)")
    assert out.error.kind == "crash" and "SIGSEGV" in out.error.message
    out = pool.call(UNRESTRICTED, None, "import os\nos._exit(3)")
    assert out.error.kind == "crash" and "code 3" in out.error.message
    assert_healthy(pool)


def test_malicious_pickle_reply_is_refused(pool, tmp_path):
    probe = tmp_path / "pwned"
    out = pool.call(UNRESTRICTED, None, f"""
import os
class Evil:
    def __reduce__(self):
        return (os.system, ('touch {probe}',))
result = Evil()
""")
    assert out.error.kind == "crash" and "not allowed" in out.error.message
    assert not probe.exists()
    assert_healthy(pool)


def test_output_cap():
    limits = Limits.for_profile("numpy", output_mb=1, timeout_s=5.0)
    with SandboxPool(SCHEMA, n_workers=1, limits=limits, pythonpath=[str(REPO)],
                     preload=("tests.sandbox.test_sandbox",)) as p:
        out = p.call(UNRESTRICTED, None, "result = b'x' * (5 * 2**20)")
        assert out.error.kind == "bad_return" and "output too large" in out.error.message
        out = p.call(UNRESTRICTED, None, "result = 1")
        assert out.ok


def test_cpu_limit_kills():
    limits = Limits.for_profile("numpy", cpu_s=1, timeout_s=30.0)
    with SandboxPool(SCHEMA, n_workers=1, limits=limits, pythonpath=[str(REPO)],
                     preload=("tests.sandbox.test_sandbox",)) as p:
        t0 = time.monotonic()
        out = p.call(UNRESTRICTED, None, "while True:\n    pass")
        assert out.error.kind == "timeout" and "CPU" in out.error.message
        assert time.monotonic() - t0 < 10


def test_rss_watchdog_kills_over_cap():
    limits = Limits.for_profile("numpy", memory_mb=0, rss_watchdog_mb=400, timeout_s=30.0)
    with SandboxPool(SCHEMA, n_workers=1, limits=limits, pythonpath=[str(REPO)],
                     preload=("tests.sandbox.test_sandbox",)) as p:
        out = p.call(UNRESTRICTED, None, "import numpy as np\nx = np.ones(2**28)\nresult = 1")
        assert out.error.kind == "memory" and "400 MiB" in out.error.message
        assert p.call(UNRESTRICTED, None, "result = 2").value == 2


def test_trusted_module_is_preloaded_on_demand():
    """Workers that dropped privileges get new trusted modules imported before the drop."""
    with SandboxPool(SCHEMA, n_workers=1, pythonpath=[str(REPO)]) as p:
        out = p.call(UNRESTRICTED, None, "import json\nresult = json.dumps([1])")
        assert out.ok and out.value == "[1]"
        out = p.call("no_such_module_xyz:f", None)
        assert out.error.kind == "crash" and "no_such_module_xyz" in out.error.message
        assert p.call(UNRESTRICTED, None, "result = 3").value == 3


def test_reexported_from_grace_sandbox():
    import grace.sandbox as sb

    assert sb.SandboxPool is SandboxPool and sb.Limits is Limits and sb.Outcome.__name__ == "Outcome"


def test_close_leaves_no_processes():
    p = SandboxPool(SCHEMA, n_workers=2)
    pids, root = p.worker_pids, p.root
    p.close()
    p.close()
    for pid in pids:
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        assert not Path(f"/proc/{pid}").exists()
    assert not Path(root).exists()


def test_stale_pool_dirs_of_dead_hosts_are_removed(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    stale = Path(tempfile.gettempdir()) / f"grace-sandbox-{proc.pid}-test"
    stale.mkdir()
    with SandboxPool(SCHEMA, n_workers=1) as p:
        assert p.root != str(stale)
    assert not stale.exists()


def test_jax_profile_evaluates():
    pytest.importorskip("jax")
    with SandboxPool(SCHEMA, n_workers=1, profile="jax") as p:
        assert p.limits.memory_mb == 0 and p.limits.rss_watchdog_mb > 0
        p.put("demo", make_data(100))
        out = p.evaluate(CARTPOLE, "demo")
        assert out.ok, out.error
        d = make_data(100)
        np.testing.assert_allclose(out.value[0], direct_cartpole(d["s"], d["s_next"]), rtol=1e-5)


def _unused() -> None:  # keep imports used by worker-side payloads explicit
    _ = (resource, signal, subprocess)


def test_check_result_property():
    """bad_return iff some value is non-finite; otherwise values pass through unchanged."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=1,
                    max_size=50))
    def prop(values):
        arr = np.array(values)
        if np.isfinite(arr).all():
            total, _ = check_result(arr, None, len(values))
            np.testing.assert_array_equal(total, arr)
        else:
            with pytest.raises(SandboxError) as info:
                check_result(arr, None, len(values))
            assert info.value.kind == "bad_return"
            n_nan = int(np.isnan(arr).sum())
            assert f"{n_nan} NaN" in info.value.message

    prop()
