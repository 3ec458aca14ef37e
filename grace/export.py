"""Export a reward program as a standalone Python file for other RL codebases.

The exported file does not import grace. It holds, in this order:

- the program's docstring (provenance kept) plus a short usage note;
- `PARAMS`, copied verbatim from the program (the fitted values, no rounding), and `GAMMA`, the
  discount the reward was built for (its shaping and terminal value assume it: the task's PPO
  discount unless the caller says otherwise);
- `Obs`, a small read-only view class with one property per observation field
  (`pole_angle = property(lambda self: self.raw[..., 2])`): the field mapping, baked in;
- `make_reward(xp)`: the program's code, unchanged but indented one level, closed over the
  array namespace `xp` (numpy or jax.numpy); it returns `(reward, potential or None)`. Nothing is exec'd and there is no module-level
  backend switch, so it is thread-safe and traces cleanly under `jax.jit` / `jax.vmap`;
- `reward_and_components(s, a, s_next, xp=numpy)` (the program's own total) and
  `reward_fn(s, a, s_next, xp=numpy, terminated=None)` (what grace trains with: the total less
  `paid()`: less the terminal value's shift, plus its lump on termination, plus shaping;
  `export_templates`);
- per target, the idiomatic wrapper: a `gymnasium.Wrapper`, a `brax.envs.Wrapper`, a
  gymnax-style wrapper, or a function matching imitation's `RewardFn`.
"""

from __future__ import annotations

import ast
import io
import math
import re
import tokenize
from pathlib import Path

from grace.export_templates import CALL, EXTRAS_CLASS, WRAPPERS
from grace.program import ProgramError, RewardProgram, string_literal
from grace.tasks import Task, get_task

TARGETS = ("module", "gymnasium", "brax", "gymnax", "imitation")
"""Valid values of `target`."""

# grace's `xp` names that numpy and jax.numpy do not have under the same name.
_EXTRAS = {"sigmoid", "linalg_norm"}

_IMPORTS = {
    "module": ["import numpy"],
    "gymnasium": ["import gymnasium", "import numpy"],
    "brax": ["import jax.numpy as jnp", "import numpy", "from brax.envs import State, Wrapper"],
    "gymnax": ["import jax", "import jax.numpy as jnp", "import numpy"],
    "imitation": ["import numpy"],
}
_NEEDS = {
    "module": "numpy",
    "gymnasium": "numpy and gymnasium",
    "brax": "numpy, jax and brax",
    "gymnax": "numpy and jax (it wraps any gymnax env)",
    "imitation": "numpy",
}
_USAGE = {
    "module": "total, components = reward_and_components(s, a, s_next)  # numpy arrays\n"
    "total = reward_fn(s, a, s_next, xp=jax.numpy)  # or jax arrays, also under jit/vmap",
    "gymnasium": "env = GraceReward(gymnasium.make(ENV_ID))\n"
    "obs, reward, terminated, truncated, info = env.step(action)\n"
    'info["grace_components"], info["env_reward"]',
    "brax": "env = GraceReward(brax.envs.get_environment(ENV_ID))  # wrap the raw env\n"
    "state = jax.jit(env.step)(state, action)  # state.reward is replaced\n"
    "brax.training.agents.ppo.train.train(environment=env, ...)",
    "gymnax": "env, params = gymnax.make(ENV_ID)\n"
    "env = GraceReward(env)\n"
    "obs, state, reward, done, info = jax.jit(env.step)(key, state, action, params)",
    "imitation": "from imitation.rewards.reward_wrapper import RewardVecEnvWrapper\n"
    "venv = RewardVecEnvWrapper(venv, reward_fn=imitation_reward)",
}


def export_program(program: RewardProgram, task: Task, target: str, gamma: float | None = None) -> str:
    """The text of a standalone module exporting `program` for `task` to `target`. `gamma`: the
    discount its shaping uses (None: the task's PPO discount, as `grace train` uses)."""
    if target not in TARGETS:
        raise ValueError(f"unknown export target {target!r}; valid targets: {', '.join(TARGETS)}")
    program.validate(task.schema)
    if gamma is None:
        from grace.fitness.ppo import ppo_settings

        gamma = float(ppo_settings(task)["gamma"])
    if not (math.isfinite(gamma) and 0.0 < gamma <= 1.0):
        raise ValueError(f"the discount must be in (0, 1], not {gamma!r}")
    tree = program.tree
    lines = program.source.splitlines()
    doc_node = program.docstring_node
    params_node = program.params_node
    taken: set[int] = set()
    if doc_node is not None:
        taken.update(range(doc_node.lineno, (doc_node.end_lineno or doc_node.lineno) + 1))
    params_text = "PARAMS = {}"
    if params_node is not None:
        first = params_node.lineno
        while first > 1 and lines[first - 2].lstrip().startswith("#"):
            first -= 1  # comments right above PARAMS stay with it
        params_text = "\n".join(lines[first - 1 : params_node.end_lineno])
        taken.update(range(first, (params_node.end_lineno or first) + 1))
    body = "\n".join("" if i + 1 in taken else line for i, line in enumerate(lines))
    body = re.sub(r"\n{4,}", "\n\n\n", body.strip("\n"))  # at most two blank lines where they were

    head = "\n\n".join([
        _module_docstring(program, task, target),
        "from __future__ import annotations\n\nimport functools\n\n" + "\n".join(_IMPORTS[target]),
        params_text + f"\nGAMMA = {float(gamma)!r}  # the discount this reward was built for (shaping, terminal value)",
    ])
    parts = [
        head,
        _view_class(task),
        _make_reward(body, uses_extras=_uses_extras(tree), potential=program.has_potential),
        CALL,
    ]
    if target != "module":
        parts.append(WRAPPERS[target].strip("\n"))
    text = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
    verify_export(text, program)
    return text


_TEMPLATE_NAMES = {"Obs", "_WithExtras", "GraceReward", "make_reward", "reward_and_components", "reward_fn", "paid", "payment",
                   "imitation_reward", "potential_fn", "shaping"}


def verify_export(text: str, program: RewardProgram) -> None:
    """Parse an export again and check that it embeds exactly the validated program: the same
    PARAMS, a discount `GAMMA` in (0, 1], `make_reward` holding the program's statements and
    returning its reward and potential, and at module level only the docstring, imports, PARAMS,
    GAMMA and the template's own classes and functions."""
    def refuse(why: str) -> ProgramError:
        return ProgramError(f"the export does not embed the program faithfully ({why}); refused", kind="forbidden")

    try:
        tree = ast.parse(text)
    except (SyntaxError, RecursionError, MemoryError, ValueError) as exc:
        raise refuse(f"it does not parse: {str(exc)[:120]}") from None
    body = tree.body
    if not (body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)):
        raise refuse("no module docstring")
    seen: list[str] = []
    for node in body[1:]:
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        if isinstance(node, ast.FunctionDef | ast.ClassDef) and node.name in _TEMPLATE_NAMES:
            seen.append(node.name)
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["PARAMS"]:
            seen.append("PARAMS")
        elif isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["GAMMA"]:
            value = node.value.value if isinstance(node.value, ast.Constant) else None
            if not (isinstance(value, float) and 0.0 < value <= 1.0):
                raise refuse("GAMMA must be a number in (0, 1]")
            seen.append("GAMMA")
        else:
            raise refuse(f"unexpected module-level {type(node).__name__} on line {node.lineno}")
    if len(seen) != len(set(seen)) or not {"PARAMS", "GAMMA", "make_reward"} <= set(seen):
        raise refuse("module-level names are duplicated or missing")
    params = next(n for n in body if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "PARAMS")
    if RewardProgram(ast.unparse(params)).params != program.params:
        raise refuse("PARAMS differ")
    make = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == "make_reward")
    inner = make.body[1:-1]  # docstring ... `return reward, potential`
    if inner and ast.unparse(inner[0]) == "xp = _WithExtras(xp)":
        inner = inner[1:]
    if "\n".join(ast.dump(n) for n in inner) != program.logic_dump:
        raise refuse("the reward code differs from the validated program")
    returned = ast.unparse(make.body[-1])
    if returned != f"return (reward, {'potential' if program.has_potential else 'None'})":
        raise refuse(f"make_reward ends with `{returned[:60]}`, not the reward and potential")


def export_file(path: str | Path, task: Task | str, target: str, out: str | Path) -> Path:
    """Export the reward program in file `path` for `task` (a Task or its name) to `target`."""
    text = export_program(RewardProgram.from_file(path), get_task(task), target)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out


# -- pieces ------------------------------------------------------------------------------------
def _module_docstring(program: RewardProgram, task: Task, target: str) -> str:
    head = program.docstring.strip() or f"Reward for task {task.name}."
    usage = _USAGE[target].replace("ENV_ID", repr(_env_id(task, target)))
    usage = "\n".join("    " + ln for ln in usage.splitlines())
    note = (
        f"Exported by `grace export --to {target}` for task {task.name!r}. Standalone: needs "
        f"{_NEEDS[target]}, not grace.\n"
        "`make_reward` holds the reward code exactly as evolved; `xp` is numpy or jax.numpy.\n\n"
        f"Usage:\n{usage}"
    )
    return string_literal(f"{head}\n\n{note}\n")


def _env_id(task: Task, target: str) -> str:
    """The env id a built-in task was made from (the first argument of its factory), if known."""
    factory = task.make_jax_env if target in ("brax", "gymnax") else task.make_env
    args = getattr(factory, "args", ())
    return args[0] if args and isinstance(args[0], str) else "..."


def _view_class(task: Task) -> str:
    rows = []
    for f in task.schema.fields:
        sl = task.schema.slices[f.name]
        index = str(sl.start) if f.size == 1 else f"{sl.start}:{sl.stop}"
        comment = f"  # [{f.unit}]" if f.unit else ""
        value = f"self.raw[..., {index}]"
        if f.shape:
            value += f".reshape(self.raw.shape[:-1] + {tuple(f.shape)!r})"
        rows.append(f"    {f.name} = property(lambda self: {value}){comment}")
    rows += _derived_rows(task)
    fields = "\n".join(rows)
    return f'''class Obs:
    """Read-only named view over observations of shape (..., {task.schema.width}): `s.{task.schema.names[0]}`."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        object.__setattr__(self, "raw", raw)

    def __setattr__(self, name, value):
        raise AttributeError("observation views are read-only")

{fields}'''


def _derived_rows(task: Task) -> list[str]:
    """Derived scalars (their functions' own source, as static methods) and named constants.
    Derived functions are self-contained by contract (grace.tasks.spec.Derived)."""
    import inspect
    import textwrap

    rows = [f"    {name} = {value!r}" for name, value in task.schema.constants]
    for d in task.schema.derived:
        src = textwrap.dedent(inspect.getsource(d.fn))
        src = re.sub(r"^def \w+\(", f"def _{d.name}(", src, count=1)
        rows += ["", "    @staticmethod", textwrap.indent(src.rstrip("\n"), "    "),
                 f"    {d.name} = property(lambda self: Obs._{d.name}(self.raw))"]
    return rows


def _make_reward(body: str, uses_extras: bool, potential: bool) -> str:
    extras = "    xp = _WithExtras(xp)\n\n" if uses_extras else ""
    code = f'''@functools.cache
def make_reward(xp):
    """The reward program, with the array namespace `xp` (numpy or jax.numpy) bound:
    `(reward, potential)` (potential None when the program has no shaping potential)."""

{extras}{_indent(body)}

    return reward, {"potential" if potential else "None"}'''
    if uses_extras:
        code = EXTRAS_CLASS.strip("\n") + "\n\n\n" + code
    return code


def _indent(source: str) -> str:
    """Indent every line by four spaces, except lines continuing a multi-line string."""
    inside: set[int] = set()
    for tok in tokenize.generate_tokens(io.StringIO(source + "\n").readline):
        if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
        elif getattr(tokenize, "FSTRING_MIDDLE", None) == tok.type and tok.end[0] > tok.start[0]:
            inside.update(range(tok.start[0] + 1, tok.end[0] + 1))
    out = []
    for i, line in enumerate(source.splitlines(), start=1):
        out.append(line if i in inside or not line.strip() else "    " + line)
    return "\n".join(out)


def _uses_extras(tree: ast.Module) -> bool:
    return any(
        isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "xp" and n.attr in _EXTRAS
        for n in ast.walk(tree)
    )
