"""The run configuration: one name per setting, TOML round trip, first-wave flat files, `--set`,
validation, every knob recorded in a run's config.toml, and no environment override."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from pathlib import Path

import pytest

from grace.config import (
    ConfigError,
    EvolveConfig,
    FitSettings,
    PPOConfig,
    field_docs,
    flag_name,
    leaf_types,
)
from tests.conftest import DEMOS, ROOT, run_cli

# config.toml exactly as grace wrote it before the sections existed (first wave, flat)
FLAT = '''task = "cartpole"
demos = "DEMOS"
negatives = []
out = "OUT"
init = []
proposer = "offline"
fitness = "offline"
generations = 1
population = 2
islands = 1
migrate_every = 4
rounds = 1
ppo_steps = 200000
ppo_seeds = 2
active_off_expert = false
seed = 0
workers = 1
eval_timeout = 20.0
random_negative_episodes = 4
holdout = 0.25
temperature = 0.05
parsimony = 0.0005
crossover_rate = 0.2
simplify_rate = 0.1
target_fitness = 0.0
max_wall_time = 0.0
fit_params = true
report = false

[llm]
base_url = ""
model = ""
api_key_env = "OPENAI_API_KEY"
local_model = ""
temperature = 0.8
max_tokens = 2048
n = 1
concurrency = 4
timeout = 120.0
retries = 5
prompts_dir = ""
max_calls = 0
max_tokens_total = 0
cache_from = ""
replay_only = false
label_goals = false
'''

TINY = ["--search-generations", "1", "--search-population", "2", "--search-islands", "1",
        "--set", "data.random_negative_episodes=4", "--sandbox-workers", "1", "--no-report", "--quiet"]


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    out = set()
    for k, v in tree.items():
        out |= _leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {prefix + k}
    return out


def _changed_everywhere() -> EvolveConfig:
    """A config in which every field differs from its default."""
    cfg = EvolveConfig()
    changes = {}
    for key, tp in leaf_types(EvolveConfig).items():
        old = cfg.get(key)
        if tp is bool:
            changes[key] = not old
        elif tp is int:
            changes[key] = old + 3
        elif tp is float:
            changes[key] = old + 0.125
        elif tp is str:
            changes[key] = old + "x"
        else:
            changes[key] = (*old, type(old[0])(7)) if old else ("a.npz",)
    return cfg.override(changes)


def test_toml_round_trip_records_every_field(tmp_path: Path) -> None:
    cfg = _changed_everywhere()
    assert all(cfg.get(k) != EvolveConfig().get(k) for k in leaf_types(EvolveConfig))
    cfg.save(tmp_path / "c.toml")
    assert EvolveConfig.load(tmp_path / "c.toml") == cfg
    assert _leaves(tomllib.loads((tmp_path / "c.toml").read_text())) == set(leaf_types(EvolveConfig))


def test_defaults_are_the_former_constants() -> None:
    # these were module constants (fitness/params.py, batched.py, active.py, ppo_batch.py, ...)
    assert FitSettings() == FitSettings(params=True, budget=120, subsample=4000, improve_tol=1e-4,
                                        centre_budget=80, chunk=65536, n_worst=8)
    d = EvolveConfig()
    assert (d.search.dedupe_retries, d.search.shaping_episodes, d.search.shaping_states) == (3, 2, 20)
    assert (d.data.max_per_class, d.data.context_examples, d.data.goal_candidates) == (20000, 6, 3)
    assert (d.active.shaping_min_fitness, d.active.shaping_ratio, d.active.off_expert_quantile) == (0.8, 0.5, 0.05)
    assert (d.fitness.disc_max_ref, d.ppo.timeout, d.ppo.batch_window, d.proposer.max_terms) == (2000, 3600.0, 1.0, 6)
    # the former ppo_batch.PPO_DEFAULTS, plus rejax's own defaults now written out
    common = {"max_grad_norm": 0.5, "gamma": 0.99, "gae_lambda": 0.95, "clip_eps": 0.2, "vf_coef": 0.5,
              "normalize_rewards": True, "agent_kwargs": {"activation": "tanh", "hidden_layer_sizes": (64, 64)}}
    assert PPOConfig().algo_kwargs(discrete=True) == common | {
        "num_envs": 16, "num_steps": 128, "num_epochs": 8, "num_minibatches": 4, "learning_rate": 1e-3,
        "ent_coef": 0.01, "reward_transform": "symlog", "normalize_observations": False}
    assert PPOConfig().algo_kwargs(discrete=False) == common | {
        "num_envs": 32, "num_steps": 64, "num_epochs": 4, "num_minibatches": 8, "learning_rate": 3e-4,
        "ent_coef": 0.0, "normalize_observations": True, "reward_transform": "none"}


def test_flat_first_wave_config_loads(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text(FLAT)
    cfg = EvolveConfig.load(tmp_path / "config.toml")
    assert (cfg.search.generations, cfg.search.population, cfg.sandbox.workers, cfg.data.random_negative_episodes,
            cfg.proposer.kind, cfg.fitness.kind, cfg.fit.params, cfg.report) == (1, 2, 1, 4, "offline", "offline", True, False)
    assert cfg.ppo.steps == 200_000 and cfg.ppo.discrete == PPOConfig().discrete  # new knobs: former values


def test_one_name_per_setting() -> None:
    from grace.cli import EVOLVE_FLAGS, HIDDEN_ALIASES

    keys = leaf_types(EvolveConfig)
    docs = field_docs(EvolveConfig)
    assert set(keys) <= set(docs) and all(docs[k] for k in keys)  # every field documented
    assert set(EVOLVE_FLAGS) <= set(keys) and set(HIDDEN_ALIASES.values()) <= set(keys)
    assert flag_name("llm.max_calls") == "--llm-max-calls"
    assert not set(HIDDEN_ALIASES) & {flag_name(k) for k in keys}  # an alias never shadows a canonical flag
    help_text = run_cli("evolve", "--help").stdout
    for key in ("search.generations", "llm.max_calls", "fitness.kind", "sandbox.workers"):
        assert flag_name(key) in help_text
    assert "--max-llm-calls" not in help_text and "--set" in help_text


def test_set_and_override_errors() -> None:
    cfg = EvolveConfig(demos="d.npz")
    changed = cfg.set("llm.timeout=300").set("ppo.discrete.gamma=0.9").set("ppo.continuous.hidden_layer_sizes=32,32")
    assert (changed.llm.timeout, changed.ppo.discrete.gamma, changed.ppo.continuous.hidden_layer_sizes) == (300.0, 0.9, (32, 32))
    assert changed.set("fit.params=false").fit.params is False
    for bad, message in [("search.generation=3", "did you mean search.generations"),
                         ("generations=3", "it is now search.generations"),
                         ("llm.timeout=soon", "llm.timeout must be a number"),
                         ("fit.params=maybe", "fit.params must be true or false"),
                         ("search=3", "unknown config key"), ("no-equals", "expects KEY=VALUE")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            cfg.set(bad)
    with pytest.raises(ConfigError, match="must be an integer"):
        cfg.override({"search.generations": 2.5})
    with pytest.raises(ConfigError, match="search is a section"):
        cfg.override(search=3)
    for key, value, message in [("search.max_wall_time", -1.0, "search.max_wall_time must be >= 0"),
                                ("search.target_fitness", float("nan"), "must be a finite number"),
                                ("data.holdout", 1.0, "data.holdout must be in [0, 1)")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            cfg.override({key: value}).validate()


@pytest.mark.parametrize("args, message", [
    (["--max-wall-time", "-1"], "error: search.max_wall_time must be >= 0, not -1.0"),
    (["--search-target-fitness", "nan"], "error: search.target_fitness must be a finite number, not nan"),
    (["--set", "llm.timout=3"], "error: unknown config key 'llm.timout' (did you mean llm.timeout?)"),
    (["--set", "ppo.discrete.gamma=high"], "error: ppo.discrete.gamma must be a number, not 'high'"),
])
def test_cli_bad_values_one_line_exit_2(tmp_path: Path, args: list[str], message: str) -> None:
    res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"),
                  "--out", str(tmp_path / "r"), *args)
    assert res.returncode == 2 and res.stderr.strip().splitlines() == [message]
    assert not (tmp_path / "r").exists()


def test_run_records_every_knob_and_old_runs_resume(tmp_path: Path) -> None:
    run = tmp_path / "r"
    res = run_cli("evolve", "--task", "cartpole", "--demos", str(DEMOS / "cartpole.npz"), "--out", str(run),
                  *TINY, "--set", "llm.timeout=300", "--set", "ppo.discrete.gamma=0.9",
                  env={"GRACE_LLM_REPLAY_ONLY": "1", "GRACE_LLM_CACHE": str(tmp_path / "nowhere")})
    assert res.returncode == 0, res.stderr
    tree = tomllib.loads((run / "config.toml").read_text())
    assert _leaves(tree) == set(leaf_types(EvolveConfig))
    saved = EvolveConfig.load(run / "config.toml")
    assert (saved.llm.timeout, saved.ppo.discrete.gamma, saved.search.generations) == (300.0, 0.9, 1)
    assert saved.llm.replay_only is False and saved.llm.cache_from == ""  # the environment changed nothing

    # the same run as a first-wave grace would have written it: --resume and eval --run still work
    (run / "config.toml").write_text(FLAT.replace("DEMOS", str(DEMOS / "cartpole.npz")).replace("OUT", str(run)))
    res = run_cli("evolve", "--resume", str(run), "--generations", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    from grace.search.archive import Archive

    assert Archive(run / "archive.sqlite", create=False).last_completed() == (0, 2)
    res = run_cli("eval", str(run / "best_reward.py"), "--run", str(run), "--json")
    assert res.returncode == 0, res.stderr


def test_no_environment_variable_overrides_config() -> None:
    """Only the sandbox's env scrub and the API key (named by llm.api_key_env) read the environment."""
    allowed = {"grace/sandbox/slots.py", "grace/proposers/llm/openai_api.py"}
    for path in sorted((ROOT / "grace").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text()
        hits = re.findall(r"os\.environ|getenv\(", text)
        if rel == "grace/proposers/llm/openai_api.py":
            assert re.findall(r"os\.environ[^\n]*", text) == [
                'os.environ.get(self.cfg.api_key_env) or "EMPTY"'], rel
        elif rel not in allowed:
            assert not hits, f"{rel} reads the environment"
    assert "GRACE_LLM" not in "".join(p.read_text() for p in (ROOT / "grace").rglob("*.py"))


def test_api_overrides_by_section() -> None:
    cfg = EvolveConfig().override(search={"generations": 3}, llm={"max_calls": 5}, seed=4)
    assert (cfg.search.generations, cfg.llm.max_calls, cfg.seed) == (3, 5, 4)
    assert cfg.override({"search.generations": None}) == cfg  # None = not given
    assert dataclasses.replace(cfg, seed=0) == EvolveConfig().override({"search.generations": 3, "llm.max_calls": 5})
