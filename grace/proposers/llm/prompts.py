"""Prompt templates (Jinja2): loading, per-file user overrides, and render helpers.

Built-in templates live in the repository's top-level `prompts/` folder, shipped inside the
wheel as `grace/_prompts`. `--prompts DIR` (LLMConfig.prompts_dir) overrides them *per file*:
a template found in DIR wins, any other comes from the built-in set. Rendering uses
`StrictUndefined`, so a template asking for a variable the caller did not pass fails loudly.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import jinja2

import grace
from grace.config import ConfigError

TEMPLATES = ("system", "init", "mutate", "crossover", "simplify", "densify", "shaping", "label_goals", "label_policy")

EXAMPLE_PROGRAM = '''"""Reacher: bring the fingertip to the target, without flailing."""

PARAMS = {"reach_scale": 0.05, "speed_weight": 0.1}

def reward(s, a, s_next, p):
    dist = xp.linalg.norm(s_next.fingertip - s_next.target, axis=-1)
    near = xp.exp(-dist / p["reach_scale"])
    calm = -p["speed_weight"] * xp.sum(xp.square(s_next.joint_velocity), axis=-1)
    return near + calm, {"near": near, "calm": calm}

def debug(s, a, s_next, p):
    dist = xp.linalg.norm(s_next.fingertip - s_next.target, axis=-1)
    return f"dist mean {float(xp.mean(dist)):.3f} min {float(xp.min(dist)):.3f}"
'''
"""A contract-following example for a *different* task (fields fingertip, target, joint_velocity)."""


def builtin_prompts_dir() -> Path:
    """The shipped templates: `grace/_prompts` in a wheel, else the repository's `prompts/`."""
    pkg = Path(grace.__file__).resolve().parent
    for cand in (pkg / "_prompts", pkg.parent / "prompts"):
        if (cand / "system.j2").is_file():
            return cand
    raise ConfigError(f"grace's prompt templates are missing (looked in {pkg / '_prompts'} and {pkg.parent / 'prompts'})")


def fmt(value: Any, digits: int = 4) -> str:
    """Compact number formatting for prompts: floats rounded, lists and dicts recursively."""
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float | int):
        v = float(value)
        if math.isnan(v) or math.isinf(v):
            return str(v)
        return f"{v:.{digits}g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {fmt(v, digits)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ", ".join(fmt(v, digits) for v in value) + "]"
    return str(value)


class PromptLibrary:
    """Loads and renders the prompt templates; `prompts_dir` overrides built-ins per file."""

    def __init__(self, prompts_dir: str | Path | None = None) -> None:
        loaders: list[jinja2.BaseLoader] = []
        if prompts_dir:
            user = Path(prompts_dir)
            if not user.is_dir():
                raise ConfigError(f"--prompts {user}: no such folder")
            loaders.append(jinja2.FileSystemLoader(str(user)))
        self.builtin_dir = builtin_prompts_dir()
        loaders.append(jinja2.FileSystemLoader(str(self.builtin_dir)))
        self.env = jinja2.Environment(
            loader=jinja2.ChoiceLoader(loaders), undefined=jinja2.StrictUndefined,
            trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, autoescape=False,
        )
        self.env.filters["fmt"] = fmt

    def render(self, name: str, **variables: Any) -> str:
        """Render `name`.j2 with `variables`; a missing template or variable raises ConfigError."""
        try:
            return self.env.get_template(f"{name}.j2").render(**variables).strip() + "\n"
        except jinja2.TemplateNotFound:
            raise ConfigError(f"prompt template {name}.j2 not found") from None
        except jinja2.UndefinedError as exc:
            raise ConfigError(f"prompt template {name}.j2: {exc.message}") from None


def xp_names() -> list[str]:
    """The allow-listed `xp` names from the sandbox policy (so prompts never drift from it)."""
    try:
        from grace.sandbox.policy import load_policy

        pol = load_policy()
        names = sorted(n for n in pol.xp_names if n not in ("linalg", "linalg_norm"))
        return names + [f"linalg.{n}" for n in sorted(getattr(pol, "xp_linalg", ()) or ("norm",))]
    except Exception:  # noqa: BLE001 - the prompt must render even without the policy file
        return ["abs", "sqrt", "exp", "log", "tanh", "clip", "where", "minimum", "maximum", "sum", "mean",
                "linalg.norm", "dot", "sin", "cos", "arctan2", "pi", "square", "sign"]


def context_vars(ctx: Any) -> dict[str, Any]:
    """Template variables describing the task (a grace.proposers.base.TaskContext)."""
    return {
        "task": ctx.prompt_info(),
        "fields": list(ctx.schema.names),
        "expert_states": list(ctx.expert_states),
        "negative_states": list(ctx.negative_states),
        "stats": dict(ctx.stats),
        "xp_names": xp_names(),
        "example": EXAMPLE_PROGRAM,
    }


def feedback_vars(fb: Any, max_worst: int = 8) -> dict[str, Any]:
    """Template variables for one scored parent (a grace.proposers.base.Feedback)."""
    return {
        "source": fb.program.source.strip(),
        "fitness": fb.fitness,
        "metrics": dict(fb.metrics or {}),
        "worst": list(fb.worst or [])[:max_worst],
        "error": fb.error,
        "debug_output": (fb.debug_output or "")[:2000] or None,
        "program_id": fb.program_id,
    }


_EXAMPLES = (None, 4, 2, 0)
"""Example states (expert, negative), worst examples and trajectories kept, per shrink level."""
_DEBUG = (2000, 1000, 300, 0)
"""Characters of a parent's debug() output kept, per shrink level."""


def _cut(items: list[Any] | None, level: int) -> list[Any]:
    keep = _EXAMPLES[level]
    return list(items or []) if keep is None else list(items or [])[:keep]


def build_messages(prompts: PromptLibrary, template: str, ctx: Any, level: int, parents: dict[str, Any],
                   variables: dict[str, Any]) -> list[dict[str, str]]:
    """System + user messages for `template` at shrink level 0 (everything) .. 3 (no example
    states, one worst example, no field statistics, no example program, no debug output).
    `parents`: template name -> Feedback."""
    base = context_vars(ctx)
    base["expert_states"] = _cut(base["expert_states"], level)
    base["negative_states"] = _cut(base["negative_states"], level)
    if level >= 2:
        base["stats"] = {}
    if level >= 3:
        base["example"] = ""
    extra = dict(variables)
    if "trajectories" in extra:
        extra["trajectories"] = _cut(extra["trajectories"], level) or extra["trajectories"][:1]
    for name, fb in parents.items():
        fv = feedback_vars(fb, max_worst=max(1, len(_cut([0] * 8, level))))
        fv["debug_output"] = (fv["debug_output"] or "")[:_DEBUG[level]] or None
        extra[name] = fv
    return [{"role": "system", "content": prompts.render("system", **base)},
            {"role": "user", "content": prompts.render(template, **base, **extra)}]
