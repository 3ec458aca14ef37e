"""The sandbox: reward programs compiled with RestrictedPython and run in killable,
resource-limited worker processes. See sandbox/README.md for what is and is not covered.

- `compile`: restricted compilation (in-process layer): `compile_reward(source, schema)`.
- `pool`: `SandboxPool`, the worker processes (OS limits, timeouts, hard kill).
- `results`: `Outcome`; zero-copy results (`ResultLease`, the shared-block layout).
- `policy`, `guards`, `xp`, `views`: what reward code may reach.
- `errors`: `SandboxError(kind, message, line)`.
"""

from grace.sandbox.compile import CompiledReward, compile_reward
from grace.sandbox.errors import ERROR_KINDS, SandboxError, SandboxUnavailable
from grace.sandbox.pool import Limits, Outcome, SandboxPool
from grace.sandbox.results import ResultLeakError, ResultLease

__all__ = [
    "ERROR_KINDS", "CompiledReward", "Limits", "Outcome", "ResultLease", "ResultLeakError",
    "SandboxError", "SandboxPool", "SandboxUnavailable", "compile_reward",
]
