"""grace's batched PPO trains on the BabyAI JAX twin unchanged (slow): GoToRedBall to success,
on the env's true reward and on the hand-written reference reward in the grid contract
(grace/tasks/rewards/babyai_gotoredball.py: grid cells and named constants on the view)."""

from __future__ import annotations

import pytest

from grace.fitness import ppo
from grace.tasks import get_task
from grace.types import PPOJob

pytest.importorskip("minigrid")


@pytest.mark.slow
def test_ppo_reaches_the_red_ball_on_a_short_budget() -> None:
    """150k env steps (grace's discrete PPO defaults, 2 seeds): >= 0.7 success where the
    untrained policy's mean return is ~0.1 (measured: 0.81-0.91 success at 100k steps)."""
    task = get_task("BabyAI-GoToRedBall-v0")
    job = PPOJob((ppo.TRUE_REWARD, task.reference_reward.read_text()), steps=150_000, seeds=2, eval_episodes=32,
                 n_evals=2)
    true, front = ppo.run_ppo(task, job, timeout=3000)
    for res in (true, front):
        assert res.ok, res.error
        print(f"success {res.success_per_seed}, curve {res.curve}, compile {res.compile_s:.0f}s, run {res.run_s:.0f}s")
        assert res.success_rate >= 0.7, res
        assert all(c[-1] > 2 * c[0] for c in res.curve), res.curve
