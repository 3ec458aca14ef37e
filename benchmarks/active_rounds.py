"""GRACE's outer loop, measured: per active-negative round, what the search saw and what PPO learned.

`grace evolve` with `search.rounds = M`: after each round PPO in the loop picks the round's winner
(by its policy's expert-likeness; grace/search/ppo_select.py), the adversarial probe and PPO on the
winner add negatives for the next round (grace/search/active.py, probe.py), and the run's answer is
the winner of the most expert-like round (grace/search/rounds.py; a round that does not improve
stops the search). Per round this prints the winner's offline fitness (on that round's negatives:
not comparable across rounds), its policy's expert-likeness (the discriminator of round 0, so
rounds compare) and true return from PPO in the loop (benchmark only: the search never reads it),
what the probe found, and which round the run answers with. Then ONE compiled PPO batch trains
round 0's winner and the run's answer (the `--seeds` seeds, `--steps` env steps) so the two
compare on the true return: the claim "rounds never make things worse" is that the answer is not
below round 0. Writes benchmarks/results/active_rounds.md (+ .json).

    python benchmarks/active_rounds.py --tasks cartpole_fixed pendulum --rounds 3
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from quality import normalise, references  # noqa: E402


def _fmt(v: Any, f: str = ".3f") -> str:
    return "-" if v is None else format(v, f)


def run_task(name: str, args: argparse.Namespace) -> tuple[list[str], dict[str, Any]]:
    import grace
    from grace.config import EvolveConfig
    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.search import rounds
    from grace.search.archive import Archive
    from grace.search.ppo_select import meta_key
    from grace.search.probe import summary
    from grace.types import PPOJob

    run = ROOT / "runs" / "active_rounds" / name
    t0 = time.time()
    cfg = EvolveConfig(task=name, demos=str(ROOT / "demos" / f"{name}.npz"), out=str(run), report=False).override({
        "search.rounds": args.rounds, "search.generations": args.generations, "ppo.steps": args.ppo_steps})
    res = grace.evolve(cfg, overwrite=True, progress=False)
    evolve_s = time.time() - t0
    archive = Archive(run / "archive.sqlite", create=False)
    negs = {n["version"]: n for n in archive.negatives()}
    records = {r: archive.get_meta(meta_key(r)) for r in range(args.rounds)}
    done = [r for r, rec in records.items() if rec]
    answer = rounds.best_round(archive, max(done)) if done else None
    lines, out_rounds = [], []
    for rnd in done:
        rec = records[rnd]
        win = next(c for c in rec["candidates"] if c["row"] == rec["winner"])
        nxt = negs.get(rnd + 1, {}).get("info", {})
        probe = summary(nxt["probe"]) if nxt.get("probe") else "-"
        chosen = answer is not None and answer[0] == rnd
        out_rounds.append({"round": rnd, "winner": win, "probe": nxt.get("probe"), "chosen": chosen,
                           "active_ppo_true_return": nxt.get("true_return_mean")})
        lines.append(f"| {name} | {rnd} | v{rnd} ({', '.join(n['source'] for v, n in negs.items() if v <= rnd)}) | "
                     f"{win['program_id']}{' (dense version)' if win.get('dense') else ''} | {_fmt(win['fitness'])} | "
                     f"{_fmt(win['expert_likeness'])} | {_fmt(win['true_return_mean'], '.1f')} | "
                     f"{'**yes**' if chosen else ''} | {probe} |")
    stop = res.stats.stopped_because or f"all {args.rounds} rounds"
    # round 0's winner vs the run's answer: one batch, the same seeds and steps
    first = archive.program(records[0]["winner"]).best_source if records.get(0) else None
    final = archive.program(answer[1]).best_source if answer else None
    archive.close()
    verdict = {}
    if first and final:
        srcs = [first, final, TRUE_REWARD]
        trained = run_ppo(name, PPOJob(tuple(srcs), args.steps, args.seeds, args.seed), timeout=7200)
        ref = references(name)
        norm = [[normalise(x, ref) for x in r.true_returns] if r.ok else None for r in trained]
        verdict = {"round0": norm[0], "answer": norm[1], "true_reward": norm[2], "answer_round": answer[0]}
        ms = lambda x: "-" if x is None else f"{np.mean(x):.2f} ± {np.std(x):.2f}"  # noqa: E731
        lines.append(f"| {name} | | | answer: round {answer[0]} | | | normalised true return, {args.seeds} seeds: "
                     f"round 0 {ms(norm[0])}, answer {ms(norm[1])}, true-reward PPO {ms(norm[2])} | | "
                     f"stopped: {stop}; evolve {evolve_s:.0f} s |")
    return lines, {"task": name, "rounds": out_rounds, "stopped": stop, "evolve_s": evolve_s, "final": verdict}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tasks", nargs="*", default=["cartpole_fixed", "pendulum"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--generations", type=int, default=6)
    ap.add_argument("--ppo-steps", type=int, default=200_000, help="env steps of the active-negative PPO runs")
    ap.add_argument("--steps", type=int, default=200_000, help="env steps of the final round-0-vs-answer PPO batch")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/active_rounds.md"))
    args = ap.parse_args()
    lines = [
        "# Active rounds: what each round's winner teaches, and which round the run answers with", "",
        f"`python benchmarks/active_rounds.py`: {args.rounds} rounds x {args.generations} generations, 2 islands x 16, "
        f"offline operator, the committed demos, grace's defaults (PPO in the loop, the adversarial probe, "
        f"`active.stop_when_worse`); active-negative PPO {args.ppo_steps:,} steps x 2 seeds; {os.cpu_count()} cores. "
        "Per round: the winner PPO in the loop chose, its offline fitness on that round's negatives (not "
        "comparable across rounds), its policy's expert-likeness (round 0's discriminator) and true return from "
        "PPO in the loop (2 seeds; benchmark only, the search never reads it), what the probe then found "
        "(its finds join the next round's negatives), and whether the run answers with that round. The last "
        f"row per task: round 0's winner and the run's answer trained again in one batch ({args.seeds} seeds, "
        f"{args.steps:,} steps), normalised true return (R - R_random) / (R_expert - R_random).", "",
        "| task | round | negatives | winner | offline fitness | expert-likeness | PPO true return | answer | probe after the round |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    rows = []
    for name in args.tasks:
        got, row = run_task(name, args)
        lines += got
        rows.append(row)
        print("\n".join(got), flush=True)
    Path(args.out).write_text("\n".join(lines) + "\n")
    Path(args.out).with_suffix(".json").write_text(json.dumps(rows, indent=1, default=float))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
