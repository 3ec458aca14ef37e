"""Run configuration: nested frozen sections, one per owner, loadable from TOML, overridable.

Every setting has ONE name, a dotted key: `search.generations`, `llm.max_calls`, `ppo.discrete.gamma`
(top-level fields have no section: `task`, `seed`). The TOML key is that path (`[search]
generations = 12`), `--set search.generations=12` sets it from the command line, and a dedicated
flag, where one exists, is the key with dots and underscores as dashes (`--search-generations`,
`--llm-max-calls`). Every field carries its meaning in the docstring below it; `grace evolve
--help` shows them and `config.toml`, written into each run directory, records every field, so a
run can be reproduced from its directory alone. The defaults are the values the search used
before they were configurable (they were module constants).

Nothing here reads the environment: the only environment variable grace reads is the one named
by `llm.api_key_env`, and only for the API key.
"""

from grace.config.keys import ConfigError, field_docs, flag_name, leaf_types
from grace.config.legacy import LEGACY_KEYS
from grace.config.sections import (
    SECTIONS,
    ActiveConfig,
    DataConfig,
    EvolveConfig,
    FitnessConfig,
    FitSettings,
    LLMConfig,
    PPOConfig,
    PPOHyper,
    ProposerConfig,
    SandboxConfig,
    SearchConfig,
)

__all__ = [
    "LEGACY_KEYS", "SECTIONS", "ActiveConfig", "ConfigError", "DataConfig", "EvolveConfig", "FitSettings",
    "FitnessConfig", "LLMConfig", "PPOConfig", "PPOHyper", "ProposerConfig", "SandboxConfig", "SearchConfig",
    "field_docs", "flag_name", "leaf_types",
]
