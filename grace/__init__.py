"""grace: interpretable reward functions as Python code, recovered from expert demonstrations.

The Python API mirrors the CLI:

    import grace
    result = grace.evolve(task="cartpole", demos="demos/cartpole.npz", out="runs/demo")
    program = grace.RewardProgram.from_file(result.best_path)
    text = grace.export(program, grace.get_task("cartpole"), "gymnasium")
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "EvolveConfig": ("grace.config", "EvolveConfig"),
    "RewardProgram": ("grace.program", "RewardProgram"),
    "extract_program": ("grace.program", "extract_program"),
    "Task": ("grace.tasks", "Task"),
    "get_task": ("grace.tasks", "get_task"),
    "load_demos": ("grace.data.trajectories", "load_demos"),
    "collect_expert": ("grace.data.trajectories", "collect_expert"),
    "Trajectories": ("grace.data.trajectories", "Trajectories"),
    "export": ("grace.export", "export_program"),
    "evolve": ("grace.api", "evolve"),
    "score_programs": ("grace.api", "score_programs"),
    "resolve_context": ("grace.api", "resolve_context"),
    "write_report": ("grace.report", "write_report"),
    "train_reward": ("grace.train", "train_reward"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    import importlib

    if name in _LAZY:
        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'grace' has no attribute {name!r}")
