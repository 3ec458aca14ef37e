"""Task registry: built-in tasks by name, user tasks from a TOML file path."""

from __future__ import annotations

from pathlib import Path

from grace.tasks.spec import ActionSpace, Field, ObsSchema, Policy, SchemaError, Task

__all__ = ["ActionSpace", "Field", "ObsSchema", "Policy", "SchemaError", "Task", "get_task", "task_names"]

_BUILTIN: dict[str, Task] | None = None


def _builtin() -> dict[str, Task]:
    global _BUILTIN
    if _BUILTIN is None:
        from grace.tasks.builtin import builtin_tasks

        _BUILTIN = builtin_tasks()
    return _BUILTIN


def task_names() -> list[str]:
    return sorted(_builtin())


def get_task(name_or_path: str | Path | Task) -> Task:
    """A built-in task by name, or a user task from a `.toml` file."""
    if isinstance(name_or_path, Task):
        return name_or_path
    spec = str(name_or_path)
    if spec.endswith(".toml") or Path(spec).is_file():
        from grace.tasks.user import load_task_toml

        return load_task_toml(spec)
    tasks = _builtin()
    if spec not in tasks:
        raise SchemaError(f"unknown task {spec!r}; built-in tasks: {', '.join(sorted(tasks))} (or a .toml file)")
    return tasks[spec]
