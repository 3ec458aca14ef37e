"""The applied reward of a program on a batch of transitions, inside a sandbox worker.

`applied_in_worker` is the trusted worker function (`executor.call(APPLIED_FN, source, batch,
...)`) that pays each transition what PPO and every export pay it: the program's total less its
absorbing state's reward, plus its shaping (`grace.fitness.returns.applied_reward`). The adversarial probe (grace/search/probe.py) scores its rollouts with it, so
reward code never runs in the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from grace.config import FitSettings
from grace.fitness.batched import CompiledReward, call_reward, check_finite
from grace.fitness.offline import potentials
from grace.fitness.returns import applied_reward
from grace.program import FLOOR_KEY, TERMINAL_KEY

APPLIED_FN = "grace.fitness.applied:applied_in_worker"


def applied_rewards(compiled: CompiledReward, batch: dict[str, np.ndarray], params: dict[str, float],
                    gamma: float, chunk: int | None = None) -> np.ndarray:
    """Per-transition applied reward (float64, (N,)) of `batch` {"s", "a", "s_next", "terminal"};
    ValueError when it is non-finite."""
    params = {k: float(v) for k, v in (params or {}).items()}
    terminal, floor = float(params.get(TERMINAL_KEY, 0.0)), params.get(FLOOR_KEY)
    r, _ = call_reward(compiled, batch, params, chunk or FitSettings().chunk)
    check_finite(r)
    phi = potentials(compiled, batch, params, chunk or FitSettings().chunk)
    phi_s, phi_next = phi if phi is not None else (0.0, 0.0)
    out = np.asarray(applied_reward(r, phi_s, phi_next, np.asarray(batch["terminal"], bool), terminal, gamma,
                                    floor=floor),
                     np.float64)
    check_finite(out)
    return out


def applied_in_worker(ctx: Any, compiled: CompiledReward, batch: dict[str, np.ndarray],
                      params: dict[str, float] | None = None, gamma: float = 0.99) -> np.ndarray:
    """Sandbox-pool entry point (`fn(ctx, compiled, *args, **kwargs)`): the batch travels with the
    call (it is small and only this call reads it)."""
    return applied_rewards(compiled, batch, params or {}, gamma)
