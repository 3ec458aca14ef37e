"""The options of `grace evolve`, generated from the config: one name per setting.

Every key in `EVOLVE_FLAGS` gets a dedicated flag named by `flag_name` (`llm.max_calls` ->
`--llm-max-calls`) with its help taken from the field's docstring; flag names of earlier versions
stay as hidden aliases; every other key is reachable with `--set KEY=VALUE`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

EVOLVE_FLAGS = (
    "task", "demos", "negatives", "init", "out", "seed", "report",
    "search.generations", "search.population", "search.islands", "search.rounds",
    "search.target_fitness", "search.max_wall_time", "proposer.kind", "fitness.kind",
    "ppo.steps", "ppo.seeds", "sandbox.workers", "sandbox.eval_timeout", "sandbox.executor",
    "sandbox.ray_address", "sandbox.ray_actors", "fit.params",
    "llm.base_url", "llm.model", "llm.api_key_env", "llm.local_model", "llm.n", "llm.concurrency",
    "llm.timeout", "llm.max_tokens", "llm.context_length", "llm.grammar",
    "llm.prompts_dir", "llm.max_calls", "llm.max_tokens_total", "llm.label_goals", "llm.cache_from",
    "llm.replay_only",
)
"""Config keys with a dedicated `grace evolve` flag (named by `grace.config.flag_name`); every
other key is reachable with `--set KEY=VALUE`."""

HIDDEN_ALIASES = {
    "--generations": "search.generations", "--population": "search.population",
    "--islands": "search.islands", "--rounds": "search.rounds",
    "--target-fitness": "search.target_fitness", "--max-wall-time": "search.max_wall_time",
    "--proposer": "proposer.kind", "--fitness": "fitness.kind", "--workers": "sandbox.workers",
    "--max-llm-calls": "llm.max_calls", "--max-tokens-total": "llm.max_tokens_total",
    "--label-goals": "llm.label_goals", "--replay-only": "llm.replay_only", "--prompts": "llm.prompts_dir",
    "--executor": "sandbox.executor", "--ray-address": "sandbox.ray_address",
}
"""Flag names of earlier versions, still accepted (not shown in --help)."""


def option_type(tp: Any) -> Any:
    return list[str] if getattr(tp, "__origin__", None) is tuple else tp


def evolve_params() -> tuple[list[inspect.Parameter], dict[str, str]]:
    """The generated options of `grace evolve`: python name -> config key."""
    from grace.config import EvolveConfig, field_docs, flag_name, leaf_types

    types, docs = leaf_types(EvolveConfig), field_docs(EvolveConfig)
    params, names = [], {}

    def add(name: str, key: str, flag: str, hidden: bool) -> None:
        tp = option_type(types[key])
        help_text = docs.get(key, "") + (" (repeatable)" if tp is list[str] else "")
        decl = flag if tp is not bool else f"{flag}/--no-{flag[2:]}"
        opt = typer.Option(decl, help=help_text, hidden=hidden, show_default=False)
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=None,
                                        annotation=Annotated[tp | None, opt]))
        names[name] = key

    for key in EVOLVE_FLAGS:
        add("opt_" + key.replace(".", "__"), key, flag_name(key), False)
    for flag, key in HIDDEN_ALIASES.items():
        add("alias_" + flag[2:].replace("-", "_"), key, flag, True)
    return params, names


FIXED_PARAMS = [
    inspect.Parameter("resume", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        str | None, typer.Option(help="Continue the run in this directory (only budgets may change).")]),
    inspect.Parameter("overwrite", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option(help="Replace an existing run in --out.")]),
    inspect.Parameter("config", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        Path | None, typer.Option(help="A TOML file of config keys (a run's config.toml is one).")]),
    inspect.Parameter("set_", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Annotated[
        list[str] | None, typer.Option("--set", help="Set any config key: --set llm.timeout=300 --set "
                                       "ppo.discrete.gamma=0.9 (repeatable; applied after --config, "
                                       "before the dedicated flags).")]),
    inspect.Parameter("quiet", inspect.Parameter.KEYWORD_ONLY, default=False, annotation=Annotated[
        bool, typer.Option(help="No progress display.")]),
]
