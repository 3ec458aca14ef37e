"""Zero-copy results: `SandboxPool.evaluate_lease` (read-only views onto a worker's shared
block, valid while the lease is held) and `evaluate(..., reduce=...)` (sums made in the worker).

What must hold: the same numbers as the copying path; views that cannot be written; no silent
change of a view kept past its lease (loud error, the worker is retired instead); a worker that
lies in its reply cannot make the host read outside the block.
"""

from __future__ import annotations

import gc
import mmap
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from grace.sandbox import pool as pool_module
from grace.sandbox.compile import SandboxError, check_result
from grace.sandbox.pool import Limits, SandboxPool
from grace.sandbox.results import (
    ResultLeakError,
    ResultLease,
    block_writer,
    check_reduced,
    read_block,
    reduce_sums,
)
from tests.sandbox.test_sandbox import CARTPOLE, SCHEMA, make_data

REPO = Path(__file__).resolve().parents[2]
N = 1000
OTHER = '''def reward(s, a, s_next, p):
    return xp.abs(s.cart_velocity) + 5.0, {"speed": xp.abs(s.cart_velocity)}
'''
FLOAT32 = '''def reward(s, a, s_next, p):
    return xp.asarray(s.pole_angle, dtype="float32"), {"one": 1, "flag": s.pole_angle > 0}
'''
pytestmark = pytest.mark.skipif(not hasattr(os, "memfd_create"), reason="needs memfd_create")


def bad_header(ctx, compiled, data_key, params=None):
    """TEST ONLY, a lying worker: replies with the header stored by `set_header`."""
    return ctx.extra["header"]


def set_header(ctx, compiled, header):
    """TEST ONLY: store the header `bad_header` will reply with."""
    ctx.extra["header"] = header


@pytest.fixture(scope="module")
def pool():
    p = SandboxPool(SCHEMA, n_workers=1, limits=Limits.for_profile("numpy", timeout_s=5.0),
                    pythonpath=[str(REPO)], preload=("tests.sandbox.test_zero_copy",))
    p.put("demo", make_data(N))
    yield p
    p.close()


def test_lease_equals_the_copying_result_and_is_read_only(pool):
    full = pool.evaluate(CARTPOLE, "demo").unwrap()
    with pool.evaluate_lease(CARTPOLE, "demo") as res:
        assert res.ok and res.error is None and res.seconds > 0
        assert np.array_equal(res.total, full[0])
        assert res.components.keys() == full[1].keys()
        assert all(np.array_equal(res.components[k], full[1][k]) for k in full[1])
        assert res.total.dtype == np.float64 and res.total.shape == (N,)
        assert not res.total.flags.writeable
        with pytest.raises(ValueError):
            res.total[0] = 1.0
        with pytest.raises(ValueError):
            res.total.flags.writeable = True  # the host maps the block read-only
        with pytest.raises(ValueError):
            np.add(res.components["upright"], 1.0, out=res.components["upright"])
        total, comps = res.copy()
        total[0] = 123.0  # copies are the caller's own
        assert res.total[0] == full[0][0]


def test_lease_converts_in_the_worker_like_evaluate(pool):
    full = pool.evaluate(FLOAT32, "demo").unwrap()
    with pool.evaluate_lease(FLOAT32, "demo") as res:
        assert np.array_equal(res.total, full[0])
        assert np.array_equal(res.components["one"], np.ones(N))
        assert np.array_equal(res.components["flag"], full[1]["flag"])


def test_reduce_in_the_worker(pool):
    total, comps = pool.evaluate(CARTPOLE, "demo").unwrap()
    s_total, s_comps = pool.evaluate(CARTPOLE, "demo", reduce="sum").unwrap()
    m_total, m_comps = pool.evaluate(CARTPOLE, "demo", reduce="mean").unwrap()
    assert type(s_total) is float and s_comps.keys() == comps.keys()
    np.testing.assert_allclose(s_total, total.sum(), rtol=1e-12)
    np.testing.assert_allclose(m_total, total.mean(), rtol=1e-12)
    for k in comps:
        np.testing.assert_allclose(s_comps[k], comps[k].sum(), rtol=1e-12)
        np.testing.assert_allclose(m_comps[k], comps[k].mean(), rtol=1e-12)
    with pytest.raises(ValueError, match="reduce"):
        pool.evaluate(CARTPOLE, "demo", reduce="max")
    bad = pool.evaluate("def reward(s, a, s_next, p):\n    return s.pole_angle / 0.0\n", "demo",
                        reduce="sum")
    assert bad.error.kind == "bad_return" and "non-finite" in bad.error.message


def test_released_lease_refuses_access(pool):
    res = pool.evaluate_lease(CARTPOLE, "demo")
    res.release()
    res.release()  # idempotent
    with pytest.raises(RuntimeError, match="released"):
        _ = res.total
    with pytest.raises(RuntimeError, match="released"):
        res.copy()


def test_a_view_kept_past_release_is_loud_and_never_changes(pool):
    pid = pool.worker_pids[0]
    res = pool.evaluate_lease(CARTPOLE, "demo")
    kept = res.total[::2]  # a derived view counts too
    expected = np.array(kept)
    with pytest.raises(ResultLeakError):
        res.release()
    assert pool.worker_pids != [pid]  # the worker that owned the block was retired
    other = pool.evaluate_lease(OTHER, "demo")  # a fresh worker, a fresh block
    assert np.all(other.total >= 5.0)
    other.release()
    assert np.array_equal(kept, expected)  # the kept view still shows its own numbers
    del kept
    with pool.evaluate_lease(CARTPOLE, "demo") as res:  # and the pool works on
        assert np.array_equal(res.total[::2], expected)


def test_a_dropped_view_is_no_leak(pool):
    pid = pool.worker_pids[0]
    with pool.evaluate_lease(CARTPOLE, "demo") as res:
        view = res.components["upright"]
        assert float(view.sum()) != 0.0
        del view
    assert pool.worker_pids == [pid]  # no respawn


def test_an_exception_in_the_block_is_not_masked(pool):
    with pytest.raises(KeyError, match="nope"), pool.evaluate_lease(CARTPOLE, "demo") as res:
        total = res.total  # still alive in this frame while the KeyError propagates
        raise KeyError("nope")
    assert total.shape == (N,)
    assert pool.evaluate(CARTPOLE, "demo").ok  # the worker came back (retired and respawned)


def test_a_lease_holds_its_worker_and_waiting_on_it_fails_fast(pool):
    with pool.evaluate_lease(CARTPOLE, "demo") as res:
        with pytest.raises(RuntimeError, match="release one first"):
            pool.evaluate(CARTPOLE, "demo")
        with pytest.raises(RuntimeError, match="put"):
            pool.put("other", make_data(10))
        assert res.total.shape == (N,)
    assert pool.evaluate(CARTPOLE, "demo").ok


def test_program_errors_hold_no_worker(pool):
    res = pool.evaluate_lease("def reward(s, a, s_next, p):\n    return s.raw\n", "demo")
    assert not res.ok and res.error.kind == "bad_return"
    with pytest.raises(SandboxError):
        _ = res.total
    assert pool.evaluate(CARTPOLE, "demo").ok  # one worker, and it is free
    res.release()


def test_a_forgotten_lease_gives_its_worker_back(pool):
    res = pool.evaluate_lease(CARTPOLE, "demo")
    assert res.ok
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del res
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    assert pool.evaluate(CARTPOLE, "demo").ok


@pytest.mark.parametrize("header", [
    (10 ** 9, ()),                      # far more than the block holds
    (N + 1, ("upright",)),              # not the batch that was put
    (-1, ()),                           # negative
    (N, ("a", "a")),                    # duplicate names
    (N, (3,)),                          # not a name
    (N, tuple(f"c{i}" for i in range(65))),
    ("1000", ()),                       # not an int
    [N, ()],                            # not a tuple
    (N, (), "extra"),
])
def test_a_lying_worker_is_killed(pool, monkeypatch, header):
    assert pool.call("tests.sandbox.test_zero_copy:set_header", None, header).ok
    pid = pool.worker_pids[0]
    monkeypatch.setattr(pool_module, "_EVALUATE_INTO", "tests.sandbox.test_zero_copy:bad_header")
    res = pool.evaluate_lease(CARTPOLE, "demo")
    assert not res.ok and res.error.kind == "crash" and "malformed" in res.error.message
    assert pid not in pool.worker_pids
    monkeypatch.undo()
    with pool.evaluate_lease(CARTPOLE, "demo") as res:
        assert res.ok


def lying_reduce(ctx, compiled, data_key, params=None, how="sum"):
    """TEST ONLY: a reduced reply that breaks the contract."""
    return ctx.extra["header"]


@pytest.mark.parametrize("value", [(float("nan"), {}), (1.0, {"a": float("inf")}), ("1", {}),
                                   (1.0, {"a": 1}), (1.0, {"": 1.0}), (1.0, [])])
def test_a_lying_reduced_reply_is_refused(pool, monkeypatch, value):
    assert pool.call("tests.sandbox.test_zero_copy:set_header", None, value).ok
    monkeypatch.setattr(pool_module, "_EVALUATE_REDUCED", "tests.sandbox.test_zero_copy:lying_reduce")
    out = pool.evaluate(CARTPOLE, "demo", reduce="sum")
    assert not out.ok and out.error.kind == "crash"


def test_output_larger_than_the_block_is_a_program_error():
    with SandboxPool(SCHEMA, n_workers=1, limits=Limits.for_profile("numpy", output_mb=1)) as p:
        p.put("big", make_data(100_000))  # 3 x 800 KB > 1 MiB
        res = p.evaluate_lease(CARTPOLE, "big")
        assert not res.ok and res.error.kind == "bad_return" and "too large" in res.error.message
        with p.evaluate_lease("def reward(s, a, s_next, p):\n    return s.pole_angle\n", "big") as r:
            assert r.total.shape == (100_000,)


def test_closing_the_pool_under_a_lease_keeps_the_views_valid():
    p = SandboxPool(SCHEMA, n_workers=1)
    p.put("demo", make_data(N))
    res = p.evaluate_lease(CARTPOLE, "demo")
    total = res.total
    expected = np.array(total)
    p.close()
    assert np.array_equal(total, expected)
    with pytest.raises(ResultLeakError):
        res.release()


# ----------------------------------------------------------------------------- host-side units

def _block(size: int = 4096, read_only: bool = True) -> mmap.mmap:
    fd = os.memfd_create("t", os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    m = mmap.mmap(fd, 0, access=mmap.ACCESS_READ if read_only else mmap.ACCESS_WRITE)
    os.close(fd)
    return m


def test_read_block_bounds_are_the_hosts():
    m = _block(4096)
    owner, total, comps = read_block(m, (256, ("x",)), 256)  # 2 x 256 x 8 = 4096: exactly fits
    assert total.shape == comps["x"].shape == (256,) and not total.flags.writeable
    del owner, total, comps
    for header in [(257, ("x",)), (513, ()), (2 ** 61, ())]:
        with pytest.raises(ValueError):
            read_block(m, header, None)
    with pytest.raises(ValueError, match="read-only"):
        read_block(_block(read_only=False), (1, ()), None)


def test_check_result_writes_into_the_block_in_one_pass():
    m = _block(3 * 4 * 8, read_only=False)
    out = block_writer(m, 4)
    total, comps = check_result(np.float32(2.5), {"b": np.array([True, False, True, False]),
                                                  "i": np.arange(4)}, 4, out=out)
    block = np.frombuffer(m, np.float64)
    assert np.array_equal(block, [2.5] * 4 + [1, 0, 1, 0] + [0, 1, 2, 3])
    assert np.shares_memory(total, block) and np.shares_memory(comps["i"], block)
    big = np.full(4, 1e200)  # x.x overflows: the exact check must still pass it
    assert np.array_equal(check_result(big, None, 4, out=out)[0], big)
    with pytest.raises(SandboxError, match="1 NaN"):
        check_result(np.array([0.0, np.nan, 1.0, 2.0]), None, 4, out=out)
    with pytest.raises(SandboxError, match="too large"):
        check_result(np.zeros(4), {k: np.zeros(4) for k in "abc"}, 4, out=out)


def test_reduce_sums_and_check_reduced():
    sums: list[float] = []
    check_result(np.arange(4.0), {"c": 1}, 4, sums=sums)
    assert sums == [6.0, 4.0]
    assert reduce_sums(sums, ["c"], 4, "mean") == (1.5, {"c": 1.0})
    with pytest.raises(SandboxError, match="overflows"):
        reduce_sums([float("inf")], [], 4, "sum")
    assert check_reduced((1.0, {"c": 2.0})) == (1.0, {"c": 2.0})
    with pytest.raises(ValueError):
        check_reduced((1.0, {"c": True}))


def test_failed_lease_is_inert():
    from grace.sandbox.results import Outcome

    res = ResultLease(Outcome(False, None, SandboxError("runtime", "boom")))
    with pytest.raises(SandboxError, match="boom"), res:
        _ = res.value
