"""Sandbox speed: scoring through the worker pool vs calling the reward directly with numpy.

Prints a markdown table and writes benchmarks/results/sandbox_speed.md. Measures, in one run:

- direct: the reference CartPole reward exec'd as plain Python with numpy as `xp` (no sandbox),
  called in-process on 1e5 transitions;
- in-process restricted: the same source through `compile_reward` (guards, checks), no process;
- pool: `SandboxPool.evaluate` on the same 1e5 transitions kept resident in the workers
  (end to end: request, compile-cache hit, run, checks, result copied back);
- zero-copy: `SandboxPool.evaluate_lease` (the same result as read-only views onto the worker's
  shared block; timed from the call to the lease's release) and `evaluate(..., reduce="sum")`
  (the sums computed in the worker; only floats come back);
- fixed per-call cost: `evaluate` on a 10-transition batch;
- throughput: evaluations/s with 2 workers on 1e4-transition batches (asyncio, 2 in flight);
- worker start and respawn-after-timeout times.

Usage: python benchmarks/sandbox_speed.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from grace.sandbox.compile import compile_reward
from grace.sandbox.pool import SandboxPool
from grace.sandbox.views import view
from grace.tasks.spec import Field, ObsSchema

SCHEMA = ObsSchema((Field("cart_position"), Field("cart_velocity"), Field("pole_angle"),
                    Field("pole_angular_velocity")))
REFERENCE = '''"""CartPole: keep the pole upright."""
PARAMS = {"angle_limit": 0.21, "centre_weight": 0.1}


def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    centred = -p["centre_weight"] * xp.abs(s_next.cart_position)
    return upright + centred, {"upright": upright, "centred": centred}
'''
OUT = Path(__file__).resolve().parent / "results" / "sandbox_speed.md"


def data(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    s = rng.normal(size=(n, 4)) * 0.1
    return {"s": s, "a": rng.integers(0, 2, n), "s_next": s + rng.normal(size=(n, 4)) * 0.01}


def timeit(fn, repeat: int) -> float:
    """Median seconds of `repeat` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def timeit_together(fns: dict[str, Callable[[], object]], repeat: int, passes: int = 5,
                    more: dict[str, int] | None = None) -> dict[str, float]:
    """Median seconds of `repeat` calls of each fn (`more[name]` times as many for that one),
    taken in `passes` passes over all the fns (each pass: per fn, one warm-up call, then
    back-to-back timed calls, so caches are as warm as in `timeit`). A change in the machine's
    load (2 shared cores) then hits every row alike instead of whichever row ran at that
    moment, which keeps the ratios between rows, and the target built from them, honest."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    per_pass = max(1, repeat // passes)
    for _ in range(passes):
        for name, fn in fns.items():
            fn()
            for _ in range(per_pass * (more or {}).get(name, 1)):
                t0 = time.perf_counter()
                fn()
                times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(ts) for name, ts in times.items()}


def direct_fn():
    glb: dict = {"xp": np}
    exec(compile(REFERENCE, "<direct>", "exec"), glb)  # noqa: S102 - trusted benchmark code
    fn, params = glb["reward"], glb["PARAMS"]

    def call(d):
        return fn(view(d["s"], SCHEMA), d["a"], view(d["s_next"], SCHEMA), dict(params))

    return call


def tune_malloc() -> bool:
    """glibc: keep freed batch-sized arrays in the heap (as the workers do, via MALLOC_* env).

    Without this, every 800 KB temporary of the *direct* baseline is a fresh mmap that
    page-faults (about 1 ms per 1e5 call here instead of 0.2 ms), which would flatter the pool.
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(-3, 32 << 20) and libc.mallopt(-1, 128 << 20))
    except (OSError, AttributeError):
        return False


def main() -> None:
    tuned = tune_malloc()
    load = os.getloadavg()[0]
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer repetitions")
    args = ap.parse_args()
    rep = 5 if args.quick else 30
    big, small, mid = data(100_000), data(10), data(10_000)

    direct = direct_fn()
    restricted = compile_reward(REFERENCE, SCHEMA)

    t0 = time.perf_counter()
    pool = SandboxPool(SCHEMA, n_workers=2)
    t_start = time.perf_counter() - t0
    try:
        pool.put("big", big)
        pool.put("small", small)
        pool.put("mid", mid)

        def check(out):
            assert out.ok, out.error
            return out

        def lease() -> None:
            with pool.evaluate_lease(REFERENCE, "big") as res:
                assert res.ok, res.error

        t = timeit_together({
            "direct": lambda: direct(big),
            "restricted": lambda: restricted(big["s"], big["a"], big["s_next"]),
            "pool": lambda: check(pool.evaluate(REFERENCE, "big")),
            "lease": lease,
            "reduce": lambda: check(pool.evaluate(REFERENCE, "big", reduce="sum")),
            "fixed": lambda: check(pool.evaluate(REFERENCE, "small")),
        }, rep, more={"fixed": 5})
        t_direct, t_restricted, t_pool = t["direct"], t["restricted"], t["pool"]
        t_lease, t_reduce, t_fixed = t["lease"], t["reduce"], t["fixed"]
        ref_total, ref_comps = direct(big)
        copied = pool.evaluate(REFERENCE, "big").unwrap()
        np.testing.assert_allclose(copied[0], ref_total)
        with pool.evaluate_lease(REFERENCE, "big") as res:  # the same numbers, bit for bit
            assert np.array_equal(res.total, copied[0]) and not res.total.flags.writeable
            assert all(np.array_equal(v, copied[1][k]) for k, v in res.components.items())
        sums = pool.evaluate(REFERENCE, "big", reduce="sum").unwrap()
        np.testing.assert_allclose(sums[0], copied[0].sum(), rtol=1e-12)
        np.testing.assert_allclose(sums[1]["upright"], ref_comps["upright"].sum(), rtol=1e-12)

        async def burst(n: int) -> float:
            t = time.perf_counter()
            sem = asyncio.Semaphore(pool.n_workers)

            async def one():
                async with sem:
                    check(await pool.aevaluate(REFERENCE, "mid"))

            await asyncio.gather(*[one() for _ in range(n)])
            return time.perf_counter() - t

        asyncio.run(burst(10))
        n_evals = 100 if args.quick else 600
        throughput = n_evals / asyncio.run(burst(n_evals))
        t_seq = timeit(lambda: check(pool.evaluate(REFERENCE, "mid")), rep)

        t0 = time.perf_counter()
        out = pool.evaluate("def reward(s, a, s_next, p):\n    while True:\n        pass\n",
                            "small", timeout=0.5)
        assert out.error is not None and out.error.kind == "timeout"
        check(pool.evaluate(REFERENCE, "small"))
        t_respawn = time.perf_counter() - t0 - 0.5
        uid = pool.worker_uid
    finally:
        pool.close()

    ratio = t_pool / t_direct
    bound = 1.5 * t_direct + t_fixed

    def verdict(t_path: float) -> str:
        """Met or not, and the path as fixed cost + k x direct (the target is k <= 1.5)."""
        k = (t_path - t_fixed) / t_direct
        return f"{'met' if t_path <= bound else 'NOT met'} (fixed + {k:.2f}x direct)"

    rows = [
        ("direct numpy, 1e5 transitions (no sandbox)", f"{t_direct * 1e3:.2f} ms", ""),
        ("in-process restricted (compile_reward), 1e5", f"{t_restricted * 1e3:.2f} ms",
         f"{t_restricted / t_direct:.2f}x direct"),
        ("pool evaluate, 1e5 resident (end to end, result copied)", f"{t_pool * 1e3:.2f} ms",
         f"**{ratio:.2f}x direct**"),
        ("zero-copy: pool evaluate_lease, 1e5 (call to release, read-only views)",
         f"{t_lease * 1e3:.2f} ms", f"**{t_lease / t_direct:.2f}x direct**"),
        ('zero-copy: pool evaluate(reduce="sum"), 1e5 (sums made in the worker)',
         f"{t_reduce * 1e3:.2f} ms", f"**{t_reduce / t_direct:.2f}x direct**"),
        ("fixed per-call cost (pool evaluate, 10 transitions)", f"{t_fixed * 1e3:.2f} ms",
         "target <= 5 ms"),
        ("target for 1e5: 1.5 x direct + fixed", f"{bound * 1e3:.2f} ms",
         f"copied: {verdict(t_pool)}; lease: {verdict(t_lease)}; "
         f"reduce: {verdict(t_reduce)}"),
        ("pool evaluate, 1e4 (one call at a time)", f"{t_seq * 1e3:.2f} ms", ""),
        ("throughput, 2 workers, 1e4-transition batches", f"{throughput:.0f} evals/s",
         f"{n_evals} evaluations, 2 in flight"),
        ("pool start (2 workers)", f"{t_start:.2f} s", ""),
        ("timeout kill + respawn + first call", f"{t_respawn:.2f} s", ""),
    ]
    lines = [
        "# Sandbox speed",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, numpy {np.__version__}, load average {load:.1f} at the "
        f"start (other jobs share the cores); workers run as uid {uid}; "
        f"medians of {rep} calls (fixed cost: {rep * 5}), the 1e5 rows and the fixed cost timed in "
        f"5 passes over all of them (back-to-back calls within a pass); host malloc tuned: {tuned}. "
        "Generated by "
        "`python benchmarks/sandbox_speed.py`.",
        "",
        "| measurement | time | note |",
        "|---|---|---|",
        *[f"| {a} | {b} | {c} |" for a, b, c in rows],
        "",
        "The copied pool result is the full (total, components) return, validated (shape, "
        "finite) and sent back as float64 through a per-worker shared-memory block (the pipe "
        "carries a small header), then copied into the caller's memory: 3 x 1e5 float64 (2.4 MB) "
        "cross, in proportion to the batch. `evaluate_lease` returns the same arrays (checked "
        "equal bit for bit above) as read-only views onto that block: the worker converts and "
        "checks them while writing them there, the caller copies nothing, and the lease holds "
        "the worker until released. What is left over direct numpy is the checks and that one "
        "write of 2.4 MB inside the worker. `reduce=\"sum\"` runs the same checks, whose "
        "finiteness test is a sum anyway, and sends back only the sums (equal to the sums of the "
        "copied result). The fixed cost is measured on 10 transitions.",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(text)


if __name__ == "__main__":
    main()
