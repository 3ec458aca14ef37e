"""More seeds for one row of a teach.py table: is a small gap between grace and true-reward PPO noise?

`python benchmarks/more_seeds.py --name quality19 --row mountaincar_fixed --seeds 10 --first 5` trains
the row's winner (NAME/ROW/evolve-full.json) and the true reward in ONE PPO batch, at the row's own
env steps (NAME/ROW/train.json), on PPO seeds the table did not use (the batch's keys split from
PRNGKey(FIRST), the table's from PRNGKey(teach.py's --seed, 0)), and writes NAME/ROW/more-seeds.json.
`--columns grace,no_payment,no_shaping` trains those of the row's columns (teach.py's branches, as
`teach.row_sources` builds them) beside the true reward, and writes more-seeds-<columns>.json.
`--behaviour` also records, per column and seed, the mean |value| of each observation field over the
second half of the final policy's episodes (`PPOResult.late_fields`, grace/fitness/seed_spread.py):
what a seed that failed does instead (e.g. a spinning pole: a large pole_angular_velocity).
It adds evidence beside the table; it never replaces a cell of it.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", required=True, help="the teach.py results name (benchmarks/results/NAME/)")
    ap.add_argument("--row", required=True)
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--first", type=int, default=5, help="the batch's PPO seed (teach.py's table used its --seed, 0)")
    ap.add_argument("--columns", default="grace", help="comma list of the row's columns (teach.py's branches)")
    ap.add_argument("--behaviour", action="store_true",
                    help="record each seed's late-episode mean |field| per observation field")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality import normalise
    from teach import row_sources

    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.types import PPOJob

    cache = RESULTS / args.name / args.row
    if not (cache / "evolve-full.json").exists() or not (cache / "train.json").exists():
        print(f"more_seeds: no evolve-full.json and train.json under {cache}", file=sys.stderr)
        return 2
    task = args.row.partition("@")[0]
    evolved = {path.stem.removeprefix("evolve-"): json.loads(path.read_text()) for path in cache.glob("evolve-*.json")}
    available = row_sources(evolved)
    columns = [c for c in args.columns.split(",") if c]
    if not columns or any(c not in available for c in columns):
        print(f"more_seeds: --columns must name some of this row's columns: {', '.join(available)}", file=sys.stderr)
        return 2
    steps = json.loads((cache / "train.json").read_text())["steps"]
    ref = json.loads((RESULTS / "quality" / task / "reference.json").read_text())
    t0 = time.time()
    names = [*columns, "true_reward"]
    results = run_ppo(task, PPOJob((*(available[c] for c in columns), TRUE_REWARD), steps, args.seeds, args.first),
                      timeout=7200)
    out: dict = {"row": args.row, "winner": evolved["full"]["winner"]["program_id"], "steps": steps,
                 "seeds": args.seeds, "first_seed": args.first, "wall_s": time.time() - t0, "methods": {}}
    for name, res in zip(names, results, strict=True):
        if not res.ok:
            out["methods"][name] = {"ok": False, "error": str(res.error)}
            continue
        norm = [normalise(r, ref) for r in res.true_returns]
        out["methods"][name] = {"ok": True, "returns": list(res.true_returns), "normalised": norm,
                                "mean": float(np.mean(norm)), "sem": float(np.std(norm, ddof=1) / np.sqrt(len(norm))),
                                "success": res.success_rate}
        if args.behaviour:
            out["methods"][name]["behaviour"] = [{k: round(v, 4) for k, v in seed.items()} for seed in res.late_fields or []]
        print(f"{args.row} {name}: {np.mean(norm):.2f} ± {out['methods'][name]['sem']:.2f} (standard error) "
              f"normalised over {args.seeds} seeds from PRNGKey({args.first}); success {res.success_rate:.3f}")
    out["sources"] = {c: available[c] for c in columns}
    suffix = ("" if columns == ["grace"] else "-" + "-".join(columns)) + ("-behaviour" if args.behaviour else "")
    (cache / f"more-seeds{suffix}.json").write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
