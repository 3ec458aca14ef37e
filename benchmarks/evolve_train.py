"""The two cached steps the per-task benchmarks share (benchmarks/babyai.py, locomotion.py): evolve
a reward with grace's defaults, then train PPO on the winner and on the true reward in one
compiled batch. Each step's result is a JSON file under `args.cache/<task>/`; a re-run reuses it
unless `args.force`."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

METHODS = ("grace", "true_reward")


def load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


ROOT = Path(__file__).resolve().parent.parent


def dump(path: Path, data: dict[str, Any]) -> None:
    """`data` as JSON, with the checkout's own path cut from every path in it (committed results
    name no machine's folders: a provenance's demos and run paths become repo-relative)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1, default=float).replace(f"{ROOT}/", ""))


def evolve_cached(task: str, demos: Path, args: argparse.Namespace, tag: str, key: str = "task",
                  settings: tuple[str, ...] = ()) -> dict[str, Any]:
    """One evolution (seed `args.seed`, `args.generations`, `args.workers`, then `settings` and
    `args.set` as KEY=VALUE): the winner as grace hands it over (best_reward.py, with its potential)."""
    path = args.cache / task / "evolve.json"
    if (cached := load(path)) and not args.force:
        return cached
    from grace.api import evolve
    from grace.config import EvolveConfig

    cfg = EvolveConfig(task=task, demos=str(demos), out=str(args.runs / task), seed=args.seed,
                       report=False).override({"search.generations": args.generations,
                                               "sandbox.workers": args.workers})
    for assignment in (*settings, *args.set):
        cfg = cfg.set(assignment)
    print(f"[{tag}] evolve {task}", flush=True)
    t0 = time.time()
    res = evolve(cfg, overwrite=True, progress=False)
    if res.best is None:
        raise SystemExit(f"[{tag}] {task}: the search scored no program")
    out = {key: task, "set": args.set, "generations": args.generations, "wall_s": time.time() - t0,
           "evaluated": res.stats.evaluated,
           "winner": {"program_id": res.best.program_id, "fitness": res.best.fitness, "heldout": res.best.heldout,
                      "size": res.best.size, "metrics": res.best.metrics,
                      "source": Path(res.best_path).read_text() if res.best_path else res.best.best_source}}
    dump(path, out)
    return out


def train_cached(task: str, evolved: dict[str, Any], args: argparse.Namespace, tag: str,
                 row: Callable[[Any], dict[str, Any]], key: str = "task",
                 algo_kwargs: dict[str, Any] | None = None, timeout: float = 7200) -> dict[str, Any]:
    """PPO on the winner and on the true reward (`METHODS`), `args.seeds` x `args.steps`, in one
    compiled batch; `row(result)` says what each method's entry records."""
    path = args.cache / task / "train.json"
    if (cached := load(path)) and not args.force:
        return cached
    from grace.fitness.ppo import TRUE_REWARD, ppo_settings, run_ppo
    from grace.tasks import get_task
    from grace.types import PPOJob

    sources = (evolved["winner"]["source"], TRUE_REWARD)
    print(f"[{tag}] train {task}: grace, true reward x {args.seeds} seeds x {args.steps} steps", flush=True)
    t0 = time.time()
    results = run_ppo(task, PPOJob(sources, args.steps, args.seeds, args.seed, algo_kwargs=algo_kwargs or None),
                      timeout=timeout)
    out: dict[str, Any] = {key: task, "steps": args.steps, "seeds": args.seeds, "wall_s": time.time() - t0,
                           "ppo": {k: (list(v) if isinstance(v, tuple) else v)
                                   for k, v in ppo_settings(get_task(task), algo_kwargs).items() if k != "agent_kwargs"},
                           "methods": {}}
    for name, res in zip(METHODS, results, strict=True):
        out["methods"][name] = row(res) if res.ok else {"ok": False, "error": res.error}
    dump(path, out)
    return out
