"""Which term of a reward makes PPO fail on some seeds? PPO on the whole reward and on each term alone.

`python benchmarks/term_ablation.py --name quality23 --row cartpole_fixed --seeds 20 --first 5` takes the
row's winner (NAME/ROW/evolve-full.json; or `--file REWARD.py --task TASK`), and trains in ONE PPO
batch, at the row's env steps (NAME/ROW/train.json; `--steps` otherwise): the whole reward, each of its
terms alone (`grace.program.term_alone`: the reward returns `(total, {name: term, ...})` with the
total their sum, as grace's operator writes them; a term alone returns that term, same PARAMS, same
potential) and the true reward. Seeds are PPO seeds the table did not use (keys split from PRNGKey(FIRST)). Writes
benchmarks/results/term_ablation/<row or file stem>.md and .json: per variant the normalised return,
the seeds that balance / succeed, and each failing seed's late-episode field means
(`PPOResult.late_fields`). It adds evidence beside a table; it never replaces a cell of it.

The reward text is only parsed here (its `reward` renamed, a wrapper added: `grace.program.terms`);
every variant is validated against the task's schema and runs only in the sandbox's PPO worker.
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
OUT = RESULTS / "term_ablation"
SHOWN = 5
"""Failing seeds whose late-episode field means a row of the table spells out."""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--name", help="a teach.py results name (benchmarks/results/NAME/)")
    ap.add_argument("--row", help="the row whose winner to take apart")
    ap.add_argument("--file", help="a reward file instead of a row's winner (with --task)")
    ap.add_argument("--task")
    ap.add_argument("--steps", type=int, default=0, help="env steps per PPO run (0: the row's)")
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--first", type=int, default=5, help="the batch's PPO seed (teach.py's table used 0)")
    ap.add_argument("--likeness", action="store_true",
                    help="also score each seed's policy by expert-likeness, as PPO in the loop does (the "
                         "discriminator fitted on the task's committed demos)")
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from quality import normalise

    from grace.fitness.ppo import TRUE_REWARD, run_ppo
    from grace.program import ProgramError, RewardProgram, term_alone, term_names
    from grace.tasks import get_task
    from grace.types import PPOJob

    if args.file:
        if not args.task or not Path(args.file).is_file():
            print("term_ablation: --file needs an existing file and --task", file=sys.stderr)
            return 2
        source, task, label, steps = Path(args.file).read_text(), args.task, Path(args.file).stem, args.steps or 200_000
    else:
        cache = RESULTS / str(args.name) / str(args.row)
        if not args.name or not args.row or not (cache / "evolve-full.json").exists():
            print(f"term_ablation: give --name and --row of a teach.py run (no {cache}/evolve-full.json)", file=sys.stderr)
            return 2
        source = json.loads((cache / "evolve-full.json").read_text())["winner"]["source"]
        task, label = args.row.partition("@")[0], f"{args.name}-{args.row}"
        steps = args.steps or json.loads((cache / "train.json").read_text())["steps"]
    t = get_task(task)
    try:
        names = term_names(source)
        RewardProgram(source).validate(t.schema)
        variants = {"whole reward": source} | {f"{n} alone": term_alone(source, n, t.schema) for n in names}
    except ProgramError as exc:
        print(f"term_ablation: {exc}", file=sys.stderr)
        return 2
    ref_path = RESULTS / "quality" / task / "reference.json"
    ref = json.loads(ref_path.read_text()) if ref_path.exists() else None
    labels = [*variants, "true reward"]
    print(f"[term_ablation] {task}: {', '.join(labels)} x {args.seeds} seeds x {steps} steps", flush=True)
    t0 = time.time()
    disc = _discriminator(t) if args.likeness else None
    results = run_ppo(t, PPOJob((*variants.values(), TRUE_REWARD), steps, args.seeds, args.first, score_states=disc),
                      timeout=7200)
    out: dict = {"task": task, "source_of": label, "steps": steps, "seeds": args.seeds, "first_seed": args.first,
                 "wall_s": round(time.time() - t0, 1), "variants": {}, "sources": variants}
    rows = []
    best = max(max(r.true_returns) for r in results if r.ok)  # the batch's best seed (without references)
    for name, res in zip(labels, results, strict=True):
        if not res.ok:
            out["variants"][name] = {"ok": False, "error": str(res.error)}
            rows.append(f"| {name} | failed: {res.error} | | | |")
            continue
        ret = list(res.true_returns)
        norm = [normalise(r, ref) for r in ret] if ref else None
        failing = [i for i, r in enumerate(ret) if (norm[i] < 0.5 if norm else r < 0.5 * best)]
        out["variants"][name] = {"ok": True, "returns": ret, "normalised": norm, "success": res.success_rate,
                                 "failing_seeds": failing, "late_fields": res.late_fields,
                                 "likeness": res.irl_per_seed}
        score = f"{np.mean(norm):.2f} ± {np.std(norm, ddof=1) / np.sqrt(len(norm)):.2f}" if norm else f"{np.mean(ret):.1f}"
        late = "; ".join(f"seed {i}: " + ", ".join(f"{k} {v:.3g}" for k, v in (res.late_fields or [{}])[i].items())
                         for i in failing[:SHOWN]) + ("; ..." if len(failing) > SHOWN else "")
        like = f" {_likeness_cell(res.irl_per_seed, failing)} |" if disc is not None else ""
        rows.append(f"| {name} | {score} | {len(ret) - len(failing)} of {len(ret)} | {', '.join(map(str, failing)) or '-'} |{like} {late or '-'} |")
        print(f"{name}: returns {[round(r) for r in ret]}", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / f"{label}.json").write_text(json.dumps(out, indent=1))
    md = [f"# Term ablation: {label}", "",
          f"`python benchmarks/term_ablation.py {' '.join(sys.argv[1:])}`: PPO on the whole reward, each term alone "
          f"and the true reward in ONE batch ({steps:,} env steps, {args.seeds} seeds from PRNGKey({args.first}), the "
          "task's PPO settings). Normalised return (mean ± standard error) = (R - R_random) / (R_expert - R_random) "
          "(quality.py's references). A seed fails when its normalised return is under 0.5 (without references: its "
          f"return under half the batch's best seed); late (the first {SHOWN} failing seeds) = "
          "mean |value| of each field over the second half of its final episodes.", "",
          *(["Expert-likeness (--likeness): per seed, under the discriminator PPO in the loop uses "
             "(`ExpertSimilarity.for_task`, fitted on the task's committed demos); mean, the loop's lower bound "
             "(mean - 2 standard errors) and the lowest seed's, failing seeds' mean.", ""] if disc is not None else []),
          "| variant | normalised | seeds not failing | failing seeds |"
          + (" expert-likeness: mean, lower bound, min (failing seeds) |" if disc is not None else "")
          + " late on the failing seeds |",
          "|---|---|---|---|" + ("---|" if disc is not None else "") + "---|", *rows, "", "## The variants", ""]
    md += [f"### {name}\n\n```python\n{src}```\n" for name, src in variants.items()]
    (OUT / f"{label}.md").write_text("\n".join(md))
    print(f"wrote {OUT / label}.md and .json")
    return 0


def _discriminator(task):  # noqa: ANN001, ANN202 (benchmark-local)
    """The discriminator PPO in the loop scores policies with, fitted on the task's committed demos
    (seed-0 split, random negatives: only the train expert rows matter to it)."""
    from grace.config import EvolveConfig
    from grace.data.dataset import build_offline_data
    from grace.data.rollout import random_negatives
    from grace.data.trajectories import load_demos
    from grace.search.ppo_select import discriminator

    demos = load_demos(ROOT / "demos" / f"{task.name}.npz", task)
    data = build_offline_data(task, demos, [("random", random_negatives(task, 20, 0))])
    return discriminator(EvolveConfig(), data, task)


def _likeness_cell(seeds: list[float] | None, failing: list[int]) -> str:
    if not seeds:
        return "-"
    from grace.search.ppo_verdict import lower_bound

    bad = f"{np.mean([seeds[i] for i in failing]):.3f}" if failing else "-"
    return f"{np.mean(seeds):.3f}, {lower_bound(seeds):.3f}, {min(seeds):.3f} ({bad})"


if __name__ == "__main__":
    sys.exit(main())
