"""GRACE's outer loop, measured: offline fitness and true PPO return per active-negative round.

`grace evolve --rounds M`: after each round, PPO trains on the round's best reward and its
rollouts join the negatives (recorded in the archive with the PPO policy's true return, which
the search never reads). The last round's best is trained the same way here, so every round
has a true return. Writes benchmarks/results/active_rounds.md.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import grace
from grace.config import EvolveConfig
from grace.search.active import _train
from grace.search.archive import Archive
from grace.tasks import get_task

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", nargs="*", default=["cartpole_fixed", "pendulum"])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--generations", type=int, default=4)
    ap.add_argument("--ppo-steps", type=int, default=200_000)
    ap.add_argument("--ablation-task", default="cartpole_fixed",
                    help="also run this task keeping only the policy's OFF-EXPERT states as negatives")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/active_rounds.md"))
    args = ap.parse_args()
    lines = [
        "# Active negatives: offline fitness and true PPO return per round",
        "",
        f"`python benchmarks/active_rounds.py`: {args.rounds} rounds x {args.generations} generations, 2 islands x 16, "
        f"offline operator, committed demos; between rounds PPO (rejax, {args.ppo_steps} steps x 2 seeds) on the "
        "round's best reward, whose rollouts become negatives v(r+1). 'fitness' is the round's best offline "
        "fitness on that round's negatives (each round's negatives are harder, so fitness is not comparable "
        "across rounds); 'true return' is the PPO policy's return on the task's true reward (never seen by the "
        f"search). {os.cpu_count()} cores.",
        "",
        "Rows marked 'off-expert' keep only the PPO policy's off-expert states as negatives (opt-in "
        "`active_off_expert`); the others label all its states negative (the paper's rule, grace's default).",
        "",
        "| task | round | negatives | best program | offline fitness (train / held-out) | PPO true return | PPO success | policy expert-likeness (vs held-out experts) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    jobs = [(n, False) for n in args.tasks] + ([(args.ablation_task, True)] if args.ablation_task else [])
    for name, off_expert in jobs:
        label = f"{name} (off-expert)" if off_expert else name
        run = ROOT / "runs" / f"bench-active-{name}{'-offexpert' if off_expert else ''}"
        t0 = time.time()
        cfg = EvolveConfig(task=name, demos=str(ROOT / "demos" / f"{name}.npz"), out=str(run), report=False).override({
            "search.rounds": args.rounds, "search.generations": args.generations, "ppo.steps": args.ppo_steps,
            "active.off_expert": off_expert})
        grace.evolve(cfg, overwrite=True, progress=False)
        archive = Archive(run / "archive.sqlite", create=False)
        gens = archive.completed_generations()
        negs = {n["version"]: n for n in archive.negatives()}
        for rnd in range(args.rounds):
            last = max((g for g in gens if g["round"] == rnd), key=lambda g: g["generation"])
            best = archive.program(last["best_program"])
            if rnd + 1 in negs:
                info = negs[rnd + 1]["info"]
            else:  # the last round's best: train it the same way
                task = get_task(name)
                res = _train(task, [best.best_source], cfg.ppo.steps, cfg.ppo.seeds, cfg.seed + 7919 * (rnd + 1), False,
                             timeout=cfg.ppo.timeout, algo_kwargs=cfg.ppo.overrides(task.action.kind == "discrete"))[0]
                info = {"true_return_mean": res.get("true_return_mean"), "success_rate": res.get("success_rate")}
            like, ref = info.get("policy_expert_likeness"), info.get("heldout_expert_likeness")
            fmt = lambda v, f=".3f": "-" if v is None else format(v, f)  # noqa: E731
            lines.append(
                f"| {label} | {rnd} | v{rnd} ({', '.join(n['source'] for v, n in negs.items() if v <= rnd)}) | "
                f"{best.program_id} | {fmt(best.fitness)} / {fmt(best.heldout)} | {fmt(info.get('true_return_mean'), '.1f')} | "
                f"{fmt(info.get('success_rate'), '.2f')} | {fmt(like)} ({fmt(ref)}) |")
            print(lines[-1], flush=True)
        lines.append(f"| {label} | | | | | | | wall {time.time() - t0:.0f} s |")
        archive.close()
    Path(args.out).write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
