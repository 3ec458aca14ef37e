"""Export a reward program as a standalone Python file for other RL codebases.

The exported file does not import grace. It holds, in this order:

- the program's docstring (provenance kept) plus a short usage note;
- `PARAMS`, copied verbatim from the program (the fitted values, no rounding);
- `Obs`, a small read-only view class with one property per observation field
  (`pole_angle = property(lambda self: self.raw[..., 2])`): the field mapping, baked in;
- `make_reward(xp)`: the program's code, unchanged but indented one level, closed over the
  array namespace `xp` (numpy or jax.numpy). Nothing is exec'd and there is no module-level
  backend switch, so it is thread-safe and traces cleanly under `jax.jit` / `jax.vmap`;
- `reward_and_components(s, a, s_next, xp=numpy)` and `reward_fn(s, a, s_next, xp=numpy)`;
- per target, the idiomatic wrapper: a `gymnasium.Wrapper`, a `brax.envs.Wrapper`, a
  gymnax-style wrapper, or a function matching imitation's `RewardFn`.
"""

from __future__ import annotations

import ast
import io
import re
import tokenize
from pathlib import Path

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


def export_program(program: RewardProgram, task: Task, target: str) -> str:
    """The text of a standalone module exporting `program` for `task` to `target`."""
    if target not in TARGETS:
        raise ValueError(f"unknown export target {target!r}; valid targets: {', '.join(TARGETS)}")
    program.validate(task.schema)
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
        params_text,
    ])
    parts = [
        head,
        _view_class(task),
        _make_reward(body, uses_extras=_uses_extras(tree)),
        _CALL,
    ]
    if target != "module":
        parts.append(_WRAPPERS[target].strip("\n"))
    text = "\n\n\n".join(p.strip("\n") for p in parts) + "\n"
    verify_export(text, program)
    return text


_TEMPLATE_NAMES = {"Obs", "_WithExtras", "GraceReward", "make_reward", "reward_and_components", "reward_fn", "terminal_value",
                   "imitation_reward"}


def verify_export(text: str, program: RewardProgram) -> None:
    """Parse an export again and check that it embeds exactly the validated program: the same
    PARAMS, `make_reward` holding the program's statements and nothing else, and at module level
    only the docstring, imports, PARAMS and the template's own classes and functions."""
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
        else:
            raise refuse(f"unexpected module-level {type(node).__name__} on line {node.lineno}")
    if len(seen) != len(set(seen)) or "PARAMS" not in seen or "make_reward" not in seen:
        raise refuse("module-level names are duplicated or missing")
    if RewardProgram(ast.unparse(next(n for n in body if isinstance(n, ast.Assign)))).params != program.params:
        raise refuse("PARAMS differ")
    make = next(n for n in body if isinstance(n, ast.FunctionDef) and n.name == "make_reward")
    inner = make.body[1:-1]  # docstring ... `return reward`
    if inner and ast.unparse(inner[0]) == "xp = _WithExtras(xp)":
        inner = inner[1:]
    if "\n".join(ast.dump(n) for n in inner) != program.logic_dump:
        raise refuse("the reward code differs from the validated program")


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
        rows.append(f"    {f.name} = property(lambda self: self.raw[..., {index}]){comment}")
    fields = "\n".join(rows)
    return f'''class Obs:
    """Read-only named view over observations of shape (..., {task.schema.width}): `s.{task.schema.names[0]}`."""

    __slots__ = ("raw",)

    def __init__(self, raw):
        object.__setattr__(self, "raw", raw)

    def __setattr__(self, name, value):
        raise AttributeError("observation views are read-only")

{fields}'''


def _make_reward(body: str, uses_extras: bool) -> str:
    extras = "    xp = _WithExtras(xp)\n\n" if uses_extras else ""
    code = f'''@functools.cache
def make_reward(xp):
    """The reward program, with the array namespace `xp` (numpy or jax.numpy) bound."""

{extras}{_indent(body)}

    return reward'''
    if uses_extras:
        code = _EXTRAS_CLASS.strip("\n") + "\n\n\n" + code
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


_EXTRAS_CLASS = '''
class _WithExtras:
    """`xp` plus the helpers grace's array namespace adds: `sigmoid` and `linalg_norm`."""

    def __init__(self, xp):
        self._xp = xp

    def __getattr__(self, name):
        return getattr(self._xp, name)

    def sigmoid(self, x):
        return 0.5 * (self._xp.tanh(0.5 * x) + 1.0)

    def linalg_norm(self, x, *args, **kwargs):
        return self._xp.linalg.norm(x, *args, **kwargs)
'''

_CALL = '''
def reward_and_components(s, a, s_next, xp=numpy):
    """Reward of transitions (s, a, s_next): `(total, components)`.

    `s`, `s_next`: observations of shape (B, obs_dim), or (obs_dim,) for one transition;
    `a`: actions of shape (B,) (discrete) or (B, act_dim). `xp`: numpy or jax.numpy.
    `total` has the batch shape; `components` maps names to arrays (empty if none).
    """
    out = make_reward(xp)(Obs(s), a, Obs(s_next), PARAMS)
    total, components = out if isinstance(out, tuple) else (out, {})
    total = xp.broadcast_to(xp.asarray(total), xp.shape(s_next)[:-1])
    return total, dict(components)


def reward_fn(s, a, s_next, xp=numpy, terminated=None):
    """The total reward of transitions (s, a, s_next); see `reward_and_components`.

    `terminated` (bool, batch-shaped): transitions that end their episode by termination, not by
    a time limit; they also get the terminal value `PARAMS["terminal"]` (the value of the
    absorbing state the episode enters; 0 when the reward has none), as grace trained with.
    """
    total = reward_and_components(s, a, s_next, xp)[0]
    if terminated is None:
        return total
    return total + xp.where(xp.asarray(terminated, dtype=bool), terminal_value(), 0.0)


def terminal_value():
    """`PARAMS["terminal"]`: added to the reward of a transition that terminates its episode."""
    return float(PARAMS.get("terminal", 0.0))
'''

_GYMNASIUM = '''
class GraceReward(gymnasium.Wrapper):
    """Replaces the env's reward with the exported reward of (obs, action, next_obs), plus the
    terminal value when the step terminates the episode (not when it is truncated).

    `info["env_reward"]` keeps the env's own reward; `info["grace_components"]` holds the
    reward's components as floats.
    """

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._obs = obs
        return obs, info

    def step(self, action):
        obs, env_reward, terminated, truncated, info = self.env.step(action)
        total, components = reward_and_components(
            numpy.asarray(self._obs), numpy.asarray(action), numpy.asarray(obs)
        )
        if terminated:  # not on truncation: a time limit is not an absorbing state
            total = total + terminal_value()
        self._obs = obs
        info = dict(info)
        info["env_reward"] = env_reward
        info["grace_components"] = {k: float(v) for k, v in components.items()}
        return obs, float(total), terminated, truncated, info
'''

_BRAX = '''
class GraceReward(Wrapper):
    """Replaces `state.reward` with the exported reward of (obs, action, next obs) (jax.numpy),
    plus the terminal value when the raw env's `done` (termination) is set.

    Wrap the raw env, before any training wrappers (episode, vmap, auto-reset): brax's
    `ppo.train(environment=GraceReward(env))` does that. Works under jit and vmap, batched or
    not. The env's own reward goes to `state.metrics["env_reward"]`, each component to
    `state.metrics["grace_<name>"]`.
    """

    def reset(self, rng) -> State:
        state = self.env.reset(rng)
        action = jnp.zeros(state.obs.shape[:-1] + (self.env.action_size,))
        _, components = reward_and_components(state.obs, action, state.obs, jnp)
        zero = jnp.zeros(state.obs.shape[:-1], jnp.float32)
        metrics = {"env_reward": zero, **{f"grace_{k}": zero for k in components}}
        return state.replace(metrics={**state.metrics, **metrics})

    def step(self, state: State, action) -> State:
        next_state = self.env.step(state, action)
        total, components = reward_and_components(state.obs, action, next_state.obs, jnp)
        metrics = {"env_reward": jnp.asarray(next_state.reward, jnp.float32)}
        metrics.update({f"grace_{k}": jnp.asarray(v, jnp.float32) for k, v in components.items()})
        # the raw env's done is termination (time limits come from the training wrappers around it)
        reward = jnp.asarray(total + jnp.where(next_state.done > 0.5, terminal_value(), 0.0), jnp.float32)
        return next_state.replace(reward=reward, metrics={**next_state.metrics, **metrics})
'''

_GYMNAX = '''
class GraceReward:
    """gymnax-style wrapper: `step` returns the exported reward of (obs, action, next obs), plus
    the terminal value on termination (done before the env's time limit).

    The reward is computed on the true next observation, before the auto-reset (which
    happens exactly as in `gymnax.environments.environment.Environment.step`).
    `info["env_reward"]` keeps the env's own reward, `info["grace_components"]` the components.
    Works under jit and vmap.
    """

    def __init__(self, env):
        self._env = env

    def __getattr__(self, name):
        return getattr(self._env, name)

    def reset(self, key, params=None):
        return self._env.reset(key, params)

    def step(self, key, state, action, params=None):
        if params is None:
            params = self._env.default_params
        key_step, key_reset = jax.random.split(key)
        obs = self._env.get_obs(state, params)
        obs_st, state_st, env_reward, done, info = self._env.step_env(key_step, state, action, params)
        total, components = reward_and_components(obs, action, obs_st, jnp)
        terminated = done  # gymnax folds its time limit into done: that is not termination
        if hasattr(state_st, "time"):
            terminated = jnp.logical_and(done, state_st.time < params.max_steps_in_episode)
        total = total + jnp.where(terminated, terminal_value(), 0.0)
        obs_re, state_re = self._env.reset_env(key_reset, params)
        state = jax.tree.map(lambda x, y: jax.lax.select(done, x, y), state_re, state_st)
        obs = jax.lax.select(done, obs_re, obs_st)
        info = dict(info)
        info["env_reward"] = env_reward
        info["grace_components"] = components
        return obs, state, jnp.asarray(total, dtype=jnp.float32), done, info
'''

_IMITATION = '''
def imitation_reward(state, action, next_state, done, /):
    """imitation's `RewardFn`: rewards of a batch of transitions as a float32 array (B,).

    `state`, `next_state`: (B, obs_dim); `action`: (B,) or (B, act_dim); `done` marks
    transitions that terminate their episode and get the terminal value (pass terminations
    only: a time-limit truncation is not an absorbing state).
    """
    total = reward_fn(numpy.asarray(state), numpy.asarray(action), numpy.asarray(next_state),
                      numpy, numpy.asarray(done, dtype=bool))
    return numpy.asarray(total, dtype=numpy.float32)
'''

_WRAPPERS = {"gymnasium": _GYMNASIUM, "brax": _BRAX, "gymnax": _GYMNAX, "imitation": _IMITATION}
