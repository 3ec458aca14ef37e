"""BabyAI, the paper's headline table: PPO on grace's reward (8 bot demos) vs PPO on the true reward.

Per level, grace evolves a reward from the committed demos (demos/BabyAI-*.npz, 8 episodes of
minigrid's BabyAI bot) with its defaults (offline operator, PPO in the loop on the JAX twin, the
final shaping stage); then ONE compiled PPO batch (`grace.fitness.ppo.run_ppo`) trains the winner
and the level's true reward (1 - 0.9 * steps / max_steps on success) with the same env steps and
seeds, on the level's JAX twin. Success = the level's own instruction verifier (`Task.success`)
over the final policies' episodes. Each stage caches its JSON under benchmarks/results/babyai/
(re-runs resume; --force redoes); the table is rebuilt from the cache: babyai.md + babyai.json.

    python benchmarks/babyai.py                       # all six levels, 5 seeds, 12 generations
    python benchmarks/babyai.py --levels BabyAI-GoToRedBall-v0 --seeds 5 --steps 1000000
    python benchmarks/babyai.py --table-only

GAIL: not run. benchmarks/baselines_imitation.py (the imitation venv's script) cannot drive a
minigrid level: it builds only classic-control gymnasium ids (its ENVS table), never imports
grace (so it has no 155-wide BabyAI observation vector) and benchmarks/.venv-imitation has no
minigrid. The GAIL column says so instead of a number.

Tiny end-to-end check (one level, 1 generation, 20,000 PPO steps, 1 seed, PPO in the loop and
the shaping stage off, written to /tmp, not to the committed results):

    python benchmarks/babyai.py --levels BabyAI-GoToRedBall-v0 --generations 1 --steps 20000 \
        --seeds 1 --set ppo.select_top=0 --set ppo.select_dense=0 --set fit.shaping=false \
        --results /tmp/babyai-tiny

took 3.4 min wall on this machine's 2 shared CPU cores while other benchmarks loaded them (the
job got 56% of a core; 1.1 GB peak RSS): evolve 65 s, the PPO batch of 2 rewards x 1 seed 133 s,
of which 106 s the compile and 6 s the 20,480 env steps. Its (meaningless at that budget) row:
success 0.25 grace vs 0.12 true-reward PPO, winner `front_is_target * target_dist` (fitness 0.95).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
NAME = "babyai"
LEVELS = ["BabyAI-GoToRedBall-v0", "BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-OpenDoor-v0",
          "BabyAI-OpenDoorColor-v0", "BabyAI-OpenTwoDoors-v0"]
METHODS = ("grace", "true_reward")
GAIL_NOTE = ("GAIL not run: benchmarks/baselines_imitation.py builds classic-control gymnasium envs only "
             "(no minigrid level, no BabyAI observation vector: it never imports grace) and "
             "benchmarks/.venv-imitation has no minigrid")


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _dump(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float))


def evolve_level(level: str, args: argparse.Namespace) -> dict[str, Any]:
    path = args.cache / level / "evolve.json"
    if (cached := _load(path)) and not args.force:
        return cached
    from grace.api import evolve
    from grace.config import EvolveConfig

    run = args.runs / level
    cfg = EvolveConfig(task=level, demos=str(ROOT / "demos" / f"{level}.npz"), out=str(run), seed=args.seed,
                       report=False).override({"search.generations": args.generations,
                                               "sandbox.workers": args.workers})
    for assignment in args.set:
        cfg = cfg.set(assignment)
    print(f"[babyai] evolve {level}", flush=True)
    t0 = time.time()
    res = evolve(cfg, overwrite=True, progress=False)
    if res.best is None:
        raise SystemExit(f"[babyai] {level}: the search scored no program")
    out = {"level": level, "set": args.set, "generations": args.generations, "wall_s": time.time() - t0,
           "evaluated": res.stats.evaluated,
           "winner": {"program_id": res.best.program_id, "fitness": res.best.fitness, "heldout": res.best.heldout,
                      "size": res.best.size, "metrics": res.best.metrics,
                      # best_reward.py: the winner as grace hands it over (with its potential, if any)
                      "source": Path(res.best_path).read_text() if res.best_path else res.best.best_source}}
    _dump(path, out)
    return out


def train_level(level: str, evolved: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    path = args.cache / level / "train.json"
    if (cached := _load(path)) and not args.force:
        return cached
    from grace.fitness.ppo import TRUE_REWARD, ppo_settings, run_ppo
    from grace.tasks import get_task
    from grace.types import PPOJob

    sources = (evolved["winner"]["source"], TRUE_REWARD)
    print(f"[babyai] train {level}: grace, true reward x {args.seeds} seeds x {args.steps} steps", flush=True)
    t0 = time.time()
    results = run_ppo(level, PPOJob(sources, args.steps, args.seeds, args.seed), timeout=7200)
    out: dict[str, Any] = {"level": level, "steps": args.steps, "seeds": args.seeds, "wall_s": time.time() - t0,
                           "ppo": {k: (list(v) if isinstance(v, tuple) else v)
                                   for k, v in ppo_settings(get_task(level)).items() if k != "agent_kwargs"},
                           "methods": {}}
    for name, res in zip(METHODS, results, strict=True):
        out["methods"][name] = ({"ok": True, "success": res.success_rate, "success_per_seed": res.success_per_seed,
                                 "returns": res.true_returns, "env_steps": res.env_steps,
                                 "compile_s": res.compile_s, "run_s": res.run_s}
                                if res.ok else {"ok": False, "error": res.error})
    _dump(path, out)
    return out


def _success(m: dict[str, Any] | None) -> str:
    if not m or not m.get("ok"):
        return "-" if not m else f"error: {str(m.get('error'))[:60]}"
    per = m.get("success_per_seed") or []
    spread = f" ± {np.std(per):.2f}" if len(per) > 1 else ""
    return "-" if m["success"] is None else f"{m['success']:.2f}{spread}"


def _ret(m: dict[str, Any] | None) -> str:
    return f"{np.mean(m['returns']):.3f}" if m and m.get("ok") and m.get("returns") else "-"


def write_table(levels: list[str], args: argparse.Namespace) -> None:
    rows, codes = [], []
    lines = [
        "# BabyAI: PPO on grace's reward (8 bot demos) vs PPO on the true reward", "",
        f"Produced by `python benchmarks/babyai.py` (offline operator with grace's defaults, {args.generations} "
        f"generations, seed {args.seed}{'; overrides ' + ', '.join(args.set) if args.set else ''}; PPO: "
        f"{args.steps:,} env steps per run, {args.seeds} seeds, both columns of a row trained in ONE compiled batch "
        "on the level's JAX twin with the task's PPO settings). Success = the level's instruction verifier over the "
        "final policies' episodes (mean ± std over seeds); return = the true return (1 - 0.9 steps / max_steps on "
        f"success, else 0), mean over seeds. GAIL: '-' ({GAIL_NOTE}).", "",
        "| level | success grace | success true-reward PPO | return grace | return true-reward PPO | GAIL "
        "| winner fitness (size) | evolve s | PPO batch s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for level in levels:
        ev, tr = _load(args.cache / level / "evolve.json"), _load(args.cache / level / "train.json")
        if ev is None or tr is None:
            lines.append(f"| {level} | " + " | ".join(["not run"] * 8) + " |")
            continue
        m, w = tr["methods"], ev["winner"]
        rows.append({"level": level, "steps": tr["steps"], "seeds": tr["seeds"], "methods": m, "gail": None,
                     "winner": {k: w[k] for k in ("program_id", "fitness", "heldout", "size")},
                     "evolve_s": ev["wall_s"], "train_s": tr["wall_s"]})
        lines.append(f"| {level} | **{_success(m.get('grace'))}** | {_success(m.get('true_reward'))} | "
                     f"{_ret(m.get('grace'))} | {_ret(m.get('true_reward'))} | - | {w['fitness']:.3f} ({w['size']}) | "
                     f"{ev['wall_s']:.0f} | {tr['wall_s']:.0f} |")
        codes += [f"### {level}: the winner ({w['program_id']}, offline fitness {w['fitness']:.3f})", "",
                  "```python", w["source"].strip(), "```", ""]
    lines += ["", "## The winning rewards", "", *codes]
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / f"{NAME}.md").write_text("\n".join(lines) + "\n")
    _dump(args.results / f"{NAME}.json", {"steps": args.steps, "seeds": args.seeds, "generations": args.generations,
                                          "set": args.set, "gail": GAIL_NOTE, "rows": rows})
    print("\n".join(lines[:len(levels) + 6]), flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--levels", default=",".join(LEVELS))
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--generations", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--force", action="store_true")
    ap.add_argument("--table-only", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="a config override for every evolution (as `grace evolve --set`)")
    ap.add_argument("--results", type=Path, default=RESULTS,
                    help="where babyai.md / babyai.json and the babyai/ cache go (default benchmarks/results)")
    args = ap.parse_args()
    levels = [lv for lv in args.levels.split(",") if lv]
    if unknown := [lv for lv in levels if lv not in LEVELS]:
        print(f"unknown level(s) {', '.join(unknown)}; choose from {', '.join(LEVELS)}", file=sys.stderr)
        return 2
    if min(args.steps, args.seeds, args.generations) < 1:
        print("--steps, --seeds and --generations must be >= 1", file=sys.stderr)
        return 2
    args.results = args.results.resolve()
    args.cache = args.results / NAME
    args.runs = ROOT / "runs" / NAME if args.results == RESULTS else args.results / "runs"
    if not args.table_only:
        for level in levels:
            train_level(level, evolve_level(level, args), args)
            write_table(levels, args)
    write_table(levels, args)
    prefix = f"{ROOT}/"
    for p in args.cache.rglob("*.json"):
        if prefix in (text := p.read_text()):
            p.write_text(text.replace(prefix, ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
