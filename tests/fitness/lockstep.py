"""One loop for the tests that step PPO's reward env and the gymnax export side by side."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np

from grace.export import export_program
from grace.program import RewardProgram
from grace.tasks import get_task
from tests.test_export import load_module


class Step(NamedTuple):
    obs: np.ndarray
    action: int
    obs_next: np.ndarray
    r_ppo: float
    r_export: float
    done: bool
    done_export: bool
    terminated: bool  # ended by the env, not by the time limit


def ppo_and_gymnax_export(program: RewardProgram, tmp_path: Path, n_steps: int, time_limit: int = 12) -> Iterator[Step]:
    """Random CartPole actions through `CandidateRewardEnv` (the sandbox's jax compile, what PPO trains
    on) and through the program's gymnax export, on the same keys and states; the time limit is short so
    that both terminations and truncations happen."""
    import jax

    from grace.fitness.ppo import _branches
    from grace.fitness.ppo_batch import CandidateRewardEnv, CandParams
    from grace.tasks.jax_envs import make

    task = get_task("cartpole")
    base, params = make("CartPole-v1")
    params = params.replace(max_steps_in_episode=time_limit)
    errors, branches, _ = _branches(task, base, params, [program.source])
    assert errors == [None]
    ppo_env = CandidateRewardEnv(base, branches)
    path = tmp_path / "cp_gymnax.py"
    path.write_text(export_program(program, task, "gymnax"))
    exported = load_module(path).GraceReward(base)
    cp = CandParams(params, np.int32(0))
    key = jax.random.PRNGKey(0)
    obs, st = ppo_env.reset_env(key, cp)
    step_ppo, step_exp = jax.jit(ppo_env.step_env), jax.jit(exported.step)
    for _ in range(n_steps):
        key, k_act, k_step = jax.random.split(key, 3)
        action = jax.random.randint(k_act, (), 0, 2)
        obs2, st2, r_ppo, done, _ = step_ppo(k_step, st, action, cp)
        _, _, r_exp, done_exp, _ = step_exp(k_step, st.inner, action, params)
        yield Step(np.asarray(obs), int(action), np.asarray(obs2), float(r_ppo), float(r_exp), bool(done),
                   bool(done_exp), bool(done) and int(st2.inner.time) < time_limit)
        if bool(done):
            obs, st = ppo_env.reset_env(k_act, cp)
        else:
            obs, st = obs2, st2
