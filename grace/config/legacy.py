"""The flat keys of first-wave config files, mapped to today's dotted keys (loading only)."""

LEGACY_KEYS = {
    "generations": "search.generations", "population": "search.population", "islands": "search.islands",
    "migrate_every": "search.migrate_every", "rounds": "search.rounds", "temperature": "search.temperature",
    "parsimony": "search.parsimony", "crossover_rate": "search.crossover_rate",
    "simplify_rate": "search.simplify_rate", "target_fitness": "search.target_fitness",
    "max_wall_time": "search.max_wall_time", "proposer": "proposer.kind", "fitness": "fitness.kind",
    "ppo_steps": "ppo.steps", "ppo_seeds": "ppo.seeds", "active_off_expert": "active.off_expert",
    "workers": "sandbox.workers", "eval_timeout": "sandbox.eval_timeout",
    "random_negative_episodes": "data.random_negative_episodes", "holdout": "data.holdout",
    "fit_params": "fit.params",
}
"""Top-level keys of the flat config.toml written by grace before the sections existed."""
