"""Run configuration: frozen dataclasses, loadable from TOML, overridable from the CLI.

Every field carries its meaning in the docstring below it; `grace evolve --help` and the
`config.toml` written into each run directory use the same names.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w


class ConfigError(ValueError):
    """A configuration file or value is wrong; one-line message."""


@dataclass(frozen=True)
class LLMConfig:
    base_url: str = ""
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM's server)."""
    model: str = ""
    """Model name as the server knows it."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (never the key itself)."""
    local_model: str = ""
    """Path of a local model for in-process vLLM (`--proposer vllm`)."""
    temperature: float = 0.8
    max_tokens: int = 2048
    n: int = 1
    """Samples per request (falls back to parallel requests if the server rejects n > 1)."""
    concurrency: int = 4
    """Requests in flight at once."""
    timeout: float = 120.0
    """Seconds per request."""
    retries: int = 5
    """Retries on 429/5xx/connection errors, with exponential backoff."""
    prompts_dir: str = ""
    """Folder of Jinja2 templates overriding the built-in prompts/."""
    max_calls: int = 0
    """Stop (resumably) after this many LLM calls; 0 = unlimited."""
    max_tokens_total: int = 0
    """Stop (resumably) after this many prompt + completion tokens; 0 = unlimited."""
    cache_from: str = ""
    """A run directory whose recorded replies are reused for identical requests."""
    replay_only: bool = False
    """Never call the server: every reply must come from the cache (exact replay)."""
    label_goals: bool = False
    """GRACE step 1: let the LLM label which expert states solve the task."""


@dataclass(frozen=True)
class EvolveConfig:
    task: str = "cartpole"
    """Built-in task name or a task .toml file."""
    demos: str = ""
    """Expert demonstrations (.npz, imitation .npz, or minari:<id>)."""
    negatives: tuple[str, ...] = ()
    """Extra negative datasets (non-expert trajectories)."""
    out: str = "runs/grace"
    """Run directory."""
    init: tuple[str, ...] = ()
    """Reward files that seed the initial population (e.g. a hand-edited best_reward.py)."""
    proposer: str = "offline"
    """offline (built-in search, no LLM) | llm (OpenAI-compatible server) | vllm (in-process)."""
    fitness: str = "offline"
    """offline (GRACE discrimination) | ppo (IRL: PPO then expert-likeness) | ppo-true (true return)."""
    generations: int = 12
    """Generations per round."""
    population: int = 16
    """Programs kept per island (and proposals per island per generation)."""
    islands: int = 2
    """Independent sub-populations; the best migrate every `migrate_every` generations."""
    migrate_every: int = 4
    rounds: int = 1
    """Active-negative rounds: after each, PPO on the best reward adds its rollouts to the negatives."""
    ppo_steps: int = 200_000
    """Env steps of each active-negative PPO run (and of PPO fitness)."""
    ppo_seeds: int = 2
    active_off_expert: bool = False
    """Keep only the policy's off-expert states as active negatives (default False: all of them,
    as in the paper). Both rules lowered the PPO return of later rounds on cartpole_fixed in
    benchmarks/results/active_rounds.md; the paper's rule lowered it less."""
    seed: int = 0
    workers: int = 2
    """Sandbox worker processes."""
    eval_timeout: float = 20.0
    """Seconds per candidate evaluation (including PARAMS fitting) before the worker is killed."""
    random_negative_episodes: int = 64
    """Random-policy episodes generated as negatives."""
    holdout: float = 0.25
    """Fraction of episodes held out to report generalisation."""
    temperature: float = 0.05
    """Softmax temperature of parent selection over fitness."""
    parsimony: float = 0.0005
    """Fitness penalty per AST node: at equal fitness, shorter code wins."""
    crossover_rate: float = 0.2
    simplify_rate: float = 0.1
    target_fitness: float = 0.0
    """Stop early once the best train fitness reaches this (0 = never)."""
    max_wall_time: float = 0.0
    """Stop (resumably) after this many seconds; 0 = unlimited."""
    fit_params: bool = True
    """Fit every candidate's PARAMS numerically (a loop stage, whoever proposed it)."""
    report: bool = True
    """Write report.html at the end."""
    llm: LLMConfig = field(default_factory=LLMConfig)

    def validate(self) -> EvolveConfig:
        from grace.fitness.base import FITNESS

        checks = [
            (self.proposer in ("offline", "llm", "vllm"), f"proposer must be offline, llm or vllm, not {self.proposer!r}"),
            (self.fitness in FITNESS, f"fitness must be one of {', '.join(FITNESS)}, not {self.fitness!r}"),
            (self.generations >= 1, "generations must be >= 1"),
            (self.population >= 2, "population must be >= 2"),
            (self.islands >= 1, "islands must be >= 1"),
            (self.rounds >= 1, "rounds must be >= 1"),
            (self.workers >= 1, "workers must be >= 1"),
            (0.0 <= self.holdout < 1.0, "holdout must be in [0, 1)"),
            (self.temperature > 0, "temperature must be > 0"),
            (self.proposer != "llm" or bool(self.llm.base_url), "--proposer llm needs --llm-base-url"),
            (self.proposer != "vllm" or bool(self.llm.local_model), "--proposer vllm needs --llm-local-model"),
            (bool(self.demos), "no demos given (--demos FILE)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def save(self, path: Path) -> None:
        path.write_text(tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvolveConfig:
        data = dict(data)
        llm = data.pop("llm", {}) or {}
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(f"unknown config keys: {', '.join(unknown)}")
        llm_names = {f.name for f in dataclasses.fields(LLMConfig)}
        bad_llm = sorted(set(llm) - llm_names)
        if bad_llm:
            raise ConfigError(f"unknown [llm] config keys: {', '.join(bad_llm)}")
        for key in ("negatives", "init"):
            if key in data:
                data[key] = tuple(data[key])
        return cls(**data, llm=LLMConfig(**llm))

    @classmethod
    def load(cls, path: str | Path) -> EvolveConfig:
        try:
            return cls.from_dict(tomllib.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except TypeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None

    def override(self, **changes: Any) -> EvolveConfig:
        """Apply CLI overrides; None means "not given". Keys prefixed llm_ go to [llm]."""
        llm_changes = {k[4:]: v for k, v in changes.items() if k.startswith("llm_") and v is not None}
        top = {k: v for k, v in changes.items() if not k.startswith("llm_") and v is not None}
        return dataclasses.replace(self, **top, llm=dataclasses.replace(self.llm, **llm_changes))
