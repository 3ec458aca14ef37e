"""How a goal's terminal value is paid to PPO, the same reward file both ways.

Since the floor (`PARAMS["floor"]`, the lowest reward the data saw) every step pays
`r - min(r_abs, floor)` and termination pays the rest of the terminal value as a lump
(grace/fitness/returns.py `payment`). On a goal task (the terminal value is the best state
forever) that is `r - floor >= 0` on every step and a goal bonus; without the floor, the whole
terminal value is the shift, `r - r_max <= 0` on every step and nothing on finishing: a living
penalty. Both have the same optimal policy; this asks which one PPO learns.

For each case, the winner of a committed run (chosen by PPO in the loop under the floor, which
favours it) trains in ONE batch of 5 seeds with the task's PPO settings: (1) as grace pays it,
(2) the same file without its floor, (3) the true reward. Writes benchmarks/results/payment.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = RESULTS / "payment.md"

CASES = {  # case -> (task, winner record, env steps per run: the benchmark's own budget)
    "mountaincar": ("mountaincar", "quality16/mountaincar/evolve-full.json", 200_000),
    "mountaincar_fixed": ("mountaincar_fixed", "quality16/mountaincar_fixed/evolve-full.json", 200_000),
    "acrobot": ("acrobot", "quality16/acrobot/evolve-full.json", 200_000),
    "acrobot_fixed": ("acrobot_fixed", "quality16/acrobot_fixed/evolve-full.json", 200_000),
    "opentwodoors": ("BabyAI-OpenTwoDoors-v0", "babyai9/babyai/BabyAI-OpenTwoDoors-v0/evolve.json", 300_000),
    "gotoredball": ("BabyAI-GoToRedBall-v0", "babyai9/babyai/BabyAI-GoToRedBall-v0/evolve.json", 300_000),
}


def without_floor(source: str) -> str:
    """The same file with its floor removed (the whole terminal value paid as the shift)."""
    from grace.program import FLOOR_KEY, RewardProgram

    program = RewardProgram(source)
    return program.with_params({k: v for k, v in program.params.items() if k != FLOOR_KEY}).source


def run_case(case: str, seeds: int) -> dict:
    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.program import FLOOR_KEY, TERMINAL_KEY, RewardProgram
    from grace.types import PPOJob

    task, record, steps = CASES[case]
    source = json.loads((RESULTS / record).read_text())["winner"]["source"]
    params = RewardProgram(source).params
    t0 = time.time()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    res = run_ppo(task, PPOJob((source, without_floor(source), TRUE_REWARD), steps, seeds, 0))
    out = {"case": case, "task": task, "record": record, "steps": steps, "seeds": seeds,
           "params": {"terminal": params.get(TERMINAL_KEY), "floor": params.get(FLOOR_KEY)}, "seconds": time.time() - t0,
           "commit": commit}
    for name, r in zip(("floor", "shift", "true"), res, strict=True):
        out[name] = {"returns": r.true_returns, "success": r.success_rate, "success_per_seed": r.success_per_seed,
                     "error": r.error}
    return out


def table(rows: list[dict]) -> str:
    def cell(side: dict) -> str:
        if side.get("error"):
            return f"error: {side['error'][:60]}"
        rets = np.asarray(side["returns"], float)
        succ = "" if side["success"] is None else f"; success {side['success']:.3g}"
        return f"{rets.mean():.4g} ± {rets.std():.3g}{succ}"

    lines = ["| case | terminal / floor | as grace pays it (floor: steps >= 0, goal lump) | without the floor "
             "(shift: steps <= 0) | true reward | per seed: floor / shift |", "|---|---|---|---|---|---|"]
    for r in rows:
        per = " / ".join(", ".join(f"{x:.3g}" for x in r[k]["returns"]) for k in ("floor", "shift"))
        paid = r["params"]
        lines.append(f"| {r['case']} ({r['steps']:,} steps) | {paid['terminal']} / {paid['floor']} | {cell(r['floor'])} | "
                     f"{cell(r['shift'])} | {cell(r['true'])} | {per} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cases", default=",".join(CASES))
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args()
    cache = RESULTS / "payment.json"
    done = {r["case"]: r for r in json.loads(cache.read_text())} if cache.exists() else {}
    for case in args.cases.split(","):
        if case not in done:
            print(f"[payment] {case}", flush=True)
            done[case] = run_case(case, args.seeds)
            cache.write_text(json.dumps(list(done.values()), indent=1))
    commits = ", ".join(sorted({r["commit"] for r in done.values()}))
    notes = RESULTS / "payment-notes.md"
    OUT.write_text(
        "# Paying a goal's terminal value: steps shifted by the floor and a lump, or a shift alone\n\n"
        f"`python benchmarks/payment.py`, run at {commits}: each case's committed winner trained by PPO with the task's "
        "settings in one batch of " f"{args.seeds} seeds: as grace pays it (every step `r - min(r_abs, floor)`, the rest "
        "of the terminal value on termination), the same file without its floor (every step `r - r_abs`, nothing on "
        "termination) and the true reward. Mean ± std over seeds of the final true return; success where the task "
        "defines it. The winners were chosen by PPO in the loop under the floor.\n\n"
        + table(list(done.values())) + "\n\n" + (notes.read_text() if notes.exists() else ""))
    print(OUT.read_text())


if __name__ == "__main__":
    main()
