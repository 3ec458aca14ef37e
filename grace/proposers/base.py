"""The Proposer protocol: what every search operator (LLM or built-in) speaks.

A proposer turns context into reward-program *source text*; it never runs code. The loop
persists every proposal before it is evaluated, and gives the proposer back what evaluation
found (Feedback) when it asks for a mutation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from grace.program import RewardProgram
from grace.tasks.spec import prompt_info
from grace.types import Example


class BudgetExhausted(RuntimeError):
    """A proposer budget (calls, tokens) ran out: the run stops cleanly and can be resumed."""


@dataclass(frozen=True)
class TaskContext:
    """What a proposer may know about the task: never the true reward."""

    name: str
    description: str
    schema: Any  # grace.tasks.ObsSchema
    action: Any  # grace.tasks.ActionSpace
    kind: str  # "goal" | "keepalive"
    expert_states: list[dict[str, Any]] = field(default_factory=list)
    """A few positive states as {field: value} (values are floats or lists for vector fields)."""
    negative_states: list[dict[str, Any]] = field(default_factory=list)
    stats: dict[str, dict[str, float]] = field(default_factory=dict)
    """Per field: mean/std/min/max over positives ("pos_*") and negatives ("neg_*")."""

    def prompt_info(self) -> dict[str, str]:
        return prompt_info(self)


@dataclass
class Feedback:
    """A scored program as the proposer sees it."""

    program: RewardProgram
    fitness: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    worst: Sequence[Example | Mapping[str, Any]] = field(default_factory=list)
    """Worst-scored examples (`grace.types.Example`, a read-only mapping: "label" ("expert" |
    "negative"), "reward", "state" {field: value}, "components" {name: float}); plain dicts with
    those keys work too (tests, hand-built feedback)."""
    error: str | None = None
    debug_output: str | None = None
    program_id: str = ""


@dataclass
class Proposal:
    """One proposed program (or a failure to produce one)."""

    source: str | None
    operator: str
    parents: tuple[str, ...] = ()
    error: str | None = None
    """Why no usable source came back (no code in the reply, syntax error, ...)."""
    meta: dict[str, Any] = field(default_factory=dict)
    """Proposer-specific: LLM call ids, tokens, latency, mutation kind, ..."""


@runtime_checkable
class Proposer(Protocol):
    """Every operator the loop may call. A proposer that cannot do one says so in its reply
    (`Proposal(None, op, error=...)`, or `None` from `label_goals` / `label_policy`), never by lacking the method.
    """

    name: str
    """Recorded with every proposal ("offline", "llm", ...)."""
    reask_duplicates: int
    """How often the loop may re-ask (with a new seed) when a proposal repeats logic that was
    already scored: cheap deterministic proposers say a few, an LLM (each call costs) says 0."""
    concurrency: int | None
    """Proposals in flight at once; None = as many as the sandbox evaluates in parallel."""

    async def init(self, ctx: TaskContext, n: int, seed: int) -> list[Proposal]:
        """`n` fresh programs from the task description and sample states."""

    async def mutate(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        """A variation of `parent`, informed by its worst-scored examples and errors."""

    async def crossover(self, ctx: TaskContext, a: Feedback, b: Feedback, seed: int) -> Proposal:
        """A program combining ideas of two parents."""

    async def simplify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        """A shorter program with the same behaviour."""

    async def densify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        """`parent` made dense for PPO in the loop: the same ideas with a slope in every state (no
        gates, no thresholds or narrow bumps). A reward that is flat away from the expert's states
        can rank them perfectly and still teach little; PPO decides between the two."""

    async def shaping(self, ctx: TaskContext, parent: Feedback, trajectories: list[dict[str, Any]],
                      seed: int) -> Proposal:
        """GRACE step 7: a reward that rises along whole expert trajectories.
        `trajectories`: [{"states": [{field: value}, ...], "rewards": [float, ...], "steps": [...]}]."""

    async def label_goals(self, ctx: TaskContext, candidates: list[dict[str, Any]],
                          seed: int) -> list[int] | None:
        """GRACE step 1: indices of `candidates` ([{"state": {...}}]) that solve the task;
        None = this proposer does not label (the task's default positives are used)."""

    async def label_policy(self, ctx: TaskContext, candidates: list[dict[str, Any]],
                           seed: int) -> list[int] | None:
        """GRACE step 1 on policy data (`active.llm_labels`): indices of `candidates` (states of the
        policy PPO trained on the current best reward: [{"state": {...}, "reward": float | None,
        "mean_reward": float | None, "episode": int, "steps": [first, last]}], each standing for its
        segment) that look like the expert solving the task (D+; the rest are D-). None = no labels
        (this proposer does not label, or its reply could not be used): every state stays negative."""


class CallRecorder(Protocol):
    """Where a proposer persists every external call *before* using its reply (the archive)."""

    def get_reply(self, key: str) -> dict[str, Any] | None:
        """A cached reply for this request key (model, prompt, sampling params), if any."""

    def record_call(self, record: dict[str, Any]) -> None:
        """Persist one call: key, operator, prompt, reply, tokens, latency, error."""
