"""The config sections: one frozen dataclass per owner, with today's defaults."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grace.config.keys import ConfigError, apply, check_values, from_tree, to_tree
from grace.config.legacy import LEGACY_KEYS
from grace.config.ppo_hyper import PPOHyper, discrete_defaults


@dataclass(frozen=True)
class SearchConfig:
    """[search]: the evolutionary loop (grace/search/loop.py, select.py)."""

    generations: int = 12
    """Generations per round."""
    population: int = 16
    """Programs kept per island (and proposals per island per generation)."""
    islands: int = 2
    """Independent sub-populations; the best migrate every `migrate_every` generations."""
    migrate_every: int = 4
    """Generations between migrations of the best programs across islands (0 = never)."""
    rounds: int = 1
    """Active-negative rounds: after each, PPO on the best reward adds its rollouts to the negatives."""
    temperature: float = 0.05
    """Softmax temperature of parent selection over fitness."""
    parsimony: float = 0.0005
    """Fitness penalty per AST node: at equal fitness, shorter code wins."""
    crossover_rate: float = 0.2
    """Share of a generation's slots that cross two parents over."""
    simplify_rate: float = 0.1
    """Share of a generation's slots that ask for a simpler parent."""
    target_fitness: float = 0.0
    """Stop early once the best train fitness reaches this (0 = never)."""
    max_wall_time: float = 0.0
    """Stop (resumably) after this many seconds; 0 = unlimited."""
    dedupe_retries: int = 3
    """Times the built-in offline proposer is asked again (new seed) when it proposes logic that
    was already scored. LLM proposers are never re-asked: an LLM's duplicate costs a call."""
    propose_concurrency: int = 0
    """Proposals in flight at once; 0 = llm.concurrency (4 when that is 0) for LLM proposers, 2 x
    sandbox.workers for the offline proposer."""
    shaping_episodes: int = 2
    """Expert episodes shown (with the parent's per-state reward) in a shaping prompt."""
    shaping_states: int = 20
    """States per episode shown in a shaping prompt."""


@dataclass(frozen=True)
class DataConfig:
    """[data]: the labelled dataset and what proposers see of it (grace/data/, search/negatives.py)."""

    holdout: float = 0.25
    """Fraction of episodes held out to report generalisation."""
    random_negative_episodes: int = 64
    """Random-policy episodes generated as negatives."""
    max_per_class: int = 20000
    """Each class (S_e, S_n) is subsampled to at most this many transitions."""
    reached_goal: str = "negative"
    """Goal tasks: the goal transition of a negative episode that reached the goal (terminated,
    as an expert episode whose end is a goal positive): "negative" (kept as a negative),
    "drop" (left out) or "positive" (labelled a goal state). grace/data/dataset.py."""
    context_examples: int = 6
    """Expert and negative states of each class shown to proposers."""
    goal_candidates: int = 3
    """Earlier states per expert episode (besides the final one) offered for goal labelling."""
    max_demo_mb: float = 1024.0
    """Refuse demo and negative files whose arrays would take more than this many MiB
    uncompressed (checked before anything is inflated)."""


@dataclass(frozen=True)
class FitSettings:
    """[fit]: fitting PARAMS and scoring a candidate offline (grace/fitness/params.py, offline.py,
    batched.py). This record travels with every offline evaluation to the sandbox worker."""

    params: bool = True
    """Fit every candidate's PARAMS numerically (a loop stage, whoever proposed it)."""
    budget: int = 120
    """Reward evaluations (PARAMS settings scored) of the PARAMS search."""
    subsample: int = 4000
    """Train rows (class-stratified) the sequential PARAMS search scores on (`batched = false`)."""
    improve_tol: float = 1e-4
    """Fitted PARAMS must beat the initial ones by more than this: smaller "gains" are float noise
    on a scale-invariant objective and only make constants drift."""
    centre_budget: int = 80
    """Extra reward evaluations for moving fitted constants to the middle of their plateau."""
    batched: bool = True
    """Score many PARAMS settings per reward call (a pattern search on `batch_rows` rows, the K
    settings broadcast as (K, 1) arrays and calibrated together: grace/fitness/params_batched.py).
    false = the sequential path (coordinate scan + Nelder-Mead on `subsample` rows, one setting
    per call), kept for one release so benchmarks/loop_speed.py can run both side by side."""
    batch_rows: int = 1000
    """Train rows (class-stratified) the batched PARAMS search scores on."""
    final_candidates: int = 4
    """Batched path: the search hands over its answer and up to this many - 1 runners-up (the best
    settings within 0.05 of it, the last being the one least like the answer); the one
    with the best whole fitness on every train row (discrimination x return ranking, which the
    subsample cannot see) is kept, as is the initial PARAMS when it beats them all. 1 = the
    answer alone (kept unless its discrimination is worse than the initial PARAMS', as sequential)."""
    warm_start: bool = True
    """Start each calibration solve of the PARAMS search from the previous point's solution (the
    same optimum, fewer Newton steps; benchmarks/results/loop_speed.md). false = every solve from
    (0, 0), the former path, kept for one release so the benchmark can run both."""
    chunk: int = 65536
    """Transitions per reward call (the dataset is scored in chunks of this size)."""
    n_worst: int = 8
    """Most misclassified train rows returned to the proposer as counterexamples."""
    terminal: bool = True
    """Learn `PARAMS["terminal"]`, the value of the absorbing state an episode enters when it
    terminates, and `PARAMS["floor"]`, the lowest reward seen, which say how it is paid
    (grace/fitness/returns.py); off: no terminal value (the ablation; a program's own is kept)."""
    returns: bool = True
    """Fitness = discrimination x return ranking: the share of (expert, negative) episode pairs
    where the expert episode earns the higher discounted return; off: discrimination alone."""
    gamma: float = 0.0
    """Discount of the episode returns and the terminal value; 0 = the task's PPO discount."""
    shaping: bool = True
    """When the search ends, add to the winner the shaping potential learned from the demos
    (grace/proposers/offline/potential.py) if one clearly rises along expert episodes; off: the
    winner is written as found (the ablation)."""


@dataclass(frozen=True)
class FitnessConfig:
    """[fitness]: what a candidate's fitness measures (grace/fitness/)."""

    kind: str = "offline"
    """offline (GRACE discrimination) | ppo (IRL: PPO then expert-likeness) | ppo-true (true return)."""
    disc_max_ref: int = 2000
    """Expert states kept as references by the fixed discriminator of PPO fitness and active rounds."""


@dataclass(frozen=True)
class ProposerConfig:
    """[proposer]: who writes candidate programs (grace/proposers/)."""

    kind: str = "offline"
    """offline (built-in search, no LLM) | llm (OpenAI-compatible server) | vllm (in-process)."""
    max_terms: int = 6
    """Most reward terms the built-in offline operator puts in one program."""


@dataclass(frozen=True)
class LLMConfig:
    """[llm]: the LLM proposers (grace/proposers/llm/)."""

    base_url: str = ""
    """OpenAI-compatible endpoint, e.g. http://127.0.0.1:8000/v1 (vLLM's server)."""
    model: str = ""
    """Model name as the server knows it."""
    api_key_env: str = "OPENAI_API_KEY"
    """Name of the environment variable holding the API key (never the key itself)."""
    local_model: str = ""
    """Path of a local model for in-process vLLM (`proposer.kind = vllm`)."""
    temperature: float = 0.8
    """Sampling temperature."""
    max_tokens: int = 2048
    """Completion tokens per sample (lowered per request to what the server's context leaves)."""
    n: int = 1
    """Samples per request (falls back to parallel requests if the server rejects n > 1)."""
    concurrency: int = 0
    """Requests sent to the server at once; 0 = from the server (llama.cpp's slots; 8 for vLLM; 1 for
    other local servers; 4 for remote APIs)."""
    timeout: float = 300.0
    """Seconds per request, from when it is sent (a timed-out request is abandoned, not retried)."""
    retries: int = 5
    """Retries on 429/5xx/connection errors, with exponential backoff."""
    context_length: int = 0
    """The server's context in tokens (prompts shrink to fit); 0 = from the server or its first context error."""
    grammar: str = "auto"
    """Constrain program replies with a grammar of the reward contract: auto (when the server takes
    a GBNF grammar: llama.cpp, llama-cpp-python) | on | off."""
    prompts_dir: str = ""
    """Folder of Jinja2 templates overriding the built-in prompts/."""
    max_calls: int = 0
    """Stop (resumably) after this many LLM calls; 0 = unlimited."""
    max_tokens_total: int = 0
    """Stop (resumably) after this many prompt + completion tokens; 0 = unlimited."""
    cache_from: str = ""
    """Run directories (or archive files, `;`-separated) whose recorded replies are reused for
    identical requests."""
    replay_only: bool = False
    """Never call the server: every reply must come from the cache (exact replay)."""
    label_goals: bool = False
    """GRACE step 1: let the LLM label which expert states solve the task."""


@dataclass(frozen=True)
class SandboxConfig:
    """[sandbox]: where candidates run (grace/sandbox/, search/executor.py)."""

    workers: int = 2
    """Sandbox worker processes."""
    eval_timeout: float = 20.0
    """Seconds per candidate evaluation (including PARAMS fitting) before the worker is killed."""
    executor: str = "local"
    """Where evaluations run: local (this machine's sandbox pool) or ray (sandbox pools hosted by
    Ray actors; needs the `ray` extra)."""
    ray_address: str = ""
    """With executor ray: the cluster to join (auto, or HOST:PORT); empty starts a local Ray instance."""
    ray_actors: int = 2
    """With executor ray: Ray actors, each hosting its own pool of sandbox.workers sandbox workers."""
    ray_actor_cpus: float = 0.0
    """With executor ray: CPUs reserved per actor (0 = sandbox.workers)."""
    ray_actor_gpus: float = 0.0
    """With executor ray: GPUs reserved per actor (PPO fitness trains its share of a batch there)."""


@dataclass(frozen=True)
class PPOConfig:
    """[ppo]: PPO fitness and active-negative rounds (grace/fitness/ppo.py, ppo_batch.py, search/active.py)."""

    steps: int = 200_000
    """Env steps of each active-negative PPO run (and of PPO fitness)."""
    seeds: int = 2
    """Seeds (independent PPO runs) per reward."""
    timeout: float = 3600.0
    """Seconds one batch of PPO runs may take before its worker is killed."""
    batch_window: float = 1.0
    """PPO fitness: candidates that arrive within this many seconds of each other train in one batch."""
    select_top: int = 4
    """PPO in the loop: after each round, PPO trains on the top K distinct candidates in one
    compile and the winner is the one whose policy is most expert-like (candidate-independent
    discriminator; never the true reward). 0 = off; skipped when the task has no JAX env."""
    select_steps: int = 0
    """Env steps per PPO run of that selection; 0 = ppo.steps."""
    select_confirm: int = 4
    """PPO in the loop: when the most expert-like candidate does not beat an offline-better one by
    more than the seed noise (search/ppo_verdict.py), the two train again on this many more seeds and
    the more reliably expert-like wins (higher mean minus two standard errors; the better offline
    rank on a tie). 0 = no second run (the same rule on the first run's seeds)."""
    select_terms: int = 4
    """PPO in the loop, after each round's choice: each named term of the winner alone
    (`grace.program.keep_term`) is scored offline, and the best this many by offline fitness train
    beside the winner on `ppo.seeds + ppo.select_confirm` fresh seeds; a term replaces the winner
    when its policies are at least as reliably expert-like (search/ppo_terms.py). 0 = off."""
    select_payment: bool = True
    """PPO in the loop's last stage: when the winner's terminal value is a goal (above its floor), PPO
    trains it paid with the floor and paid as a shift, and the shift replaces the floor when its
    policies are more expert-like beyond the seed noise or, within it, more reliably so (PPO in the
    loop's own rule, the floor as the rival; search/payment.py). False: the floor."""
    select_similarity: float = 1.0
    """PPO in the loop: two candidates whose rewards rank a sample of the round's states alike
    (Spearman correlation above this) count as one choice, so the K trained are the best of K
    different rankings among the top 8K; 1.0 = off (the top K distinct programs)."""
    select_dense: int = 4
    """PPO in the loop also trains the dense versions (`Proposer.densify`, proposed in the round's
    last generation) of the top N, those not already among the top: a reward flat away from the
    expert's states can rank them best and teach least (benchmarks/results/teach4.md). 0 = off."""
    select_heldout: int = 2
    """PPO in the loop also trains the best N programs by (parsimony-penalised) held-out fitness whose
    held-out fitness beats every top candidate's, with their dense versions: with few demos the top by
    training fitness can fit one demo's quirks (2 Pendulum demos: train 0.78, held-out 0.25, a policy
    that spins; benchmarks/results/fewdemos2.md). 0 = off; nothing is added when no episode is held out."""
    discrete: PPOHyper = field(default_factory=discrete_defaults)
    """Hyperparameters for tasks with discrete actions."""
    continuous: PPOHyper = field(default_factory=PPOHyper)
    """Hyperparameters for tasks with continuous actions."""

    def algo_kwargs(self, discrete: bool) -> dict[str, Any]:
        return (self.discrete if discrete else self.continuous).algo_kwargs()

    def overrides(self, discrete: bool) -> dict[str, Any]:
        """The PPO settings this config changes from grace's defaults (field names): they win over
        a task's own settings, which win over the defaults."""
        default = PPOConfig()
        if discrete:
            return self.discrete.changed(default.discrete)
        return self.continuous.changed(default.continuous)


@dataclass(frozen=True)
class ActiveConfig:
    """[active]: GRACE's outer loop between rounds (grace/search/active.py)."""

    off_expert: bool = False
    """Keep only the policy's off-expert states as active negatives (default False: all of them,
    as in the paper). Both rules lowered the PPO return of later rounds on cartpole_fixed in
    benchmarks/results/active_rounds.md; the paper's rule lowered it less."""
    off_expert_quantile: float = 0.05
    """With off_expert: a state is off-expert when it is less expert-like than all but this
    quantile of the held-out expert positives."""
    shaping_min_fitness: float = 0.8
    """Shaping (GRACE step 7) is asked for when the best offline fitness is at least this ..."""
    shaping_ratio: float = 0.5
    """... and the PPO policy's expert-likeness is below this fraction of the held-out experts'."""
    stop_when_worse: bool = True
    """Stop when a round's winner trains a policy no more expert-like than the best earlier round's
    (PPO in the loop measures it); the answer is always the best round's winner (search/rounds.py)."""
    probe: bool = True
    """Before PPO, probe the best reward on the task's numpy env (CEM over open-loop action sequences
    from demo states; search/probe.py): its off-expert exploits join the next round's negatives."""
    probe_budget: int = 1024
    """Rollouts the probe may play per round (0 = no probe)."""
    probe_horizon: int = 40
    """Steps of each probed action sequence (and of the demo continuation it must out-earn)."""
    probe_share: float = 0.25
    """Share of the negative transitions the probe's exploits make up (their episodes are repeated)."""
    llm_labels: bool = False
    """GRACE step 1 on policy data (an LLM proposer): the LLM labels short segments of PPO's rollouts
    (a state each, with the best reward's value) as expert-like or not; the expert-like segments are
    not negatives (search/policy_labels.py). Persisted (archive meta `policy_labels_r<round>`) and
    reused on resume; a proposer that does not label, or a reply that cannot be parsed, keeps every
    rollout state negative (a warning line)."""
    llm_label_episodes: int = 8
    """With llm_labels: PPO episodes shown to the LLM (spread over the rollouts; the others stay negative)."""
    llm_label_segments: int = 3
    """With llm_labels: segments each shown episode is cut into (one state each in the prompt)."""


SECTIONS: dict[str, type] = {
    "search": SearchConfig, "data": DataConfig, "fit": FitSettings, "fitness": FitnessConfig,
    "proposer": ProposerConfig, "llm": LLMConfig, "sandbox": SandboxConfig, "ppo": PPOConfig,
    "active": ActiveConfig,
}



@dataclass(frozen=True)
class EvolveConfig:
    task: str = "cartpole"
    """Built-in task name or a task .toml file."""
    demos: str = ""
    """Expert demos: grace .npz, imitation .npz or datasets folder, D4RL .npz/.hdf5, or minari:<id>."""
    negatives: tuple[str, ...] = ()
    """Extra negative datasets (non-expert trajectories)."""
    out: str = "runs/grace"
    """Run directory."""
    init: tuple[str, ...] = ()
    """Reward files that seed the initial population (e.g. a hand-edited best_reward.py)."""
    seed: int = 0
    """The run's seed: the data split, parent selection, proposals, PARAMS fits and PPO derive from it."""
    report: bool = True
    """Write report.html at the end."""
    search: SearchConfig = field(default_factory=SearchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    fit: FitSettings = field(default_factory=FitSettings)
    fitness: FitnessConfig = field(default_factory=FitnessConfig)
    proposer: ProposerConfig = field(default_factory=ProposerConfig)
    llm: LLMConfig = field(default_factory=LLMConfig)
    sandbox: SandboxConfig = field(default_factory=SandboxConfig)
    ppo: PPOConfig = field(default_factory=PPOConfig)
    active: ActiveConfig = field(default_factory=ActiveConfig)

    def validate(self) -> EvolveConfig:
        """Raise ConfigError (one line) on the first bad value; returns self."""
        check_values(self)
        s, llm = self.search, self.llm
        checks = [
            (self.proposer.kind in ("offline", "llm", "vllm"),
             f"proposer.kind must be offline, llm or vllm, not {self.proposer.kind!r}"),
            (s.generations >= 1, "search.generations must be >= 1"),
            (s.population >= 2, "search.population must be >= 2"),
            (s.islands >= 1, "search.islands must be >= 1"),
            (s.rounds >= 1, "search.rounds must be >= 1"),
            (s.temperature > 0, "search.temperature must be > 0"),
            (0.0 <= s.crossover_rate <= 1.0 and 0.0 <= s.simplify_rate <= 1.0
             and s.crossover_rate + s.simplify_rate <= 1.0,
             "search.crossover_rate and search.simplify_rate must be in [0, 1] and sum to at most 1"),
            (self.sandbox.workers >= 1, "sandbox.workers must be >= 1"),
            (self.sandbox.eval_timeout > 0, "sandbox.eval_timeout must be > 0"),
            (self.sandbox.executor in ("local", "ray"), f"sandbox.executor must be local or ray, not {self.sandbox.executor!r}"),
            (self.sandbox.ray_actors >= 1 and self.sandbox.ray_actor_cpus >= 0 and self.sandbox.ray_actor_gpus >= 0,
             "sandbox.ray_actors must be >= 1, sandbox.ray_actor_cpus and sandbox.ray_actor_gpus >= 0"),
            (0.0 <= self.data.holdout < 1.0, "data.holdout must be in [0, 1)"),
            (self.active.probe_budget >= 0 and self.active.probe_horizon >= 1 and 0.0 < self.active.probe_share < 1.0,
             "active.probe_budget must be >= 0, active.probe_horizon >= 1, active.probe_share in (0, 1)"),
            (self.active.llm_label_episodes >= 1 and self.active.llm_label_segments >= 1,
             "active.llm_label_episodes and active.llm_label_segments must be >= 1"),
            (self.data.max_per_class >= 1, "data.max_per_class must be >= 1"),
            (self.data.reached_goal in ("negative", "drop", "positive"),
             f"data.reached_goal must be negative, drop or positive, not {self.data.reached_goal!r}"),
            (self.fit.budget >= 1 and min(self.fit.subsample, self.fit.batch_rows) >= 2 and self.fit.chunk >= 1,
             "fit.budget and fit.chunk must be >= 1, fit.subsample and fit.batch_rows >= 2"),
            (self.ppo.steps >= 1 and self.ppo.seeds >= 1, "ppo.steps and ppo.seeds must be >= 1"),
            (min(self.ppo.select_top, self.ppo.select_steps, self.ppo.select_dense, self.ppo.select_heldout,
                 self.ppo.select_confirm, self.ppo.select_terms) >= 0,
             "ppo.select_top, ppo.select_steps, ppo.select_dense, ppo.select_heldout, ppo.select_confirm and "
             "ppo.select_terms must be >= 0"),
            (-1.0 <= self.ppo.select_similarity <= 1.0, "ppo.select_similarity must be in [-1, 1]"),
            (all(h.reward_transform in ("none", "symlog") for h in (self.ppo.discrete, self.ppo.continuous)),
             "ppo.*.reward_transform must be none or symlog"),
            (llm.n >= 1 and llm.max_tokens >= 1, "llm.n and llm.max_tokens must be >= 1"),
            (llm.concurrency >= 0 and llm.context_length >= 0 and llm.timeout > 0,
             "llm.concurrency and llm.context_length must be >= 0 (0 = from the server), llm.timeout > 0"),
            (llm.grammar in ("auto", "on", "off"), f"llm.grammar must be auto, on or off, not {llm.grammar!r}"),
            (self.proposer.kind != "llm" or bool(llm.base_url), "--proposer-kind llm needs --llm-base-url"),
            (self.proposer.kind != "vllm" or bool(llm.local_model), "--proposer-kind vllm needs --llm-local-model"),
            (bool(self.demos), "no demos given (--demos FILE)"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        return self

    # -- TOML in / out ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Every field, sections as nested tables (what config.toml holds)."""
        return to_tree(self)

    def save(self, path: Path) -> None:
        import tomli_w

        path.write_text(tomli_w.dumps(self.to_dict()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EvolveConfig:
        """From nested tables, or from the flat layout of first-wave runs (mapped by LEGACY_KEYS);
        missing keys keep their defaults, unknown keys are an error."""
        return from_tree(cls, data, LEGACY_KEYS)

    @classmethod
    def load(cls, path: str | Path) -> EvolveConfig:
        try:
            return cls.from_dict(tomllib.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        except ConfigError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None

    # -- overrides ----------------------------------------------------------------------------
    def override(self, changes: dict[str, Any] | None = None, /, **kw: Any) -> EvolveConfig:
        """A copy with settings changed. Keys are dotted (`"search.generations"`) or top-level
        names; a section name with a dict value sets keys of that section
        (`search={"generations": 3}`). None means "not given". Values are checked against the
        field's type (ConfigError on an unknown key or a wrong type)."""
        return apply(self, {**(changes or {}), **kw}, LEGACY_KEYS)

    def set(self, assignment: str) -> EvolveConfig:
        """Apply one `section.key=value` (the CLI's `--set`); the value is parsed as the field's type."""
        from grace.config.keys import parse_assignment

        key, value = parse_assignment(type(self), assignment, LEGACY_KEYS)
        return apply(self, {key: value})

    def get(self, key: str) -> Any:
        """The value of a dotted key."""
        obj: Any = self
        for part in key.split("."):
            obj = getattr(obj, part)
        return obj
