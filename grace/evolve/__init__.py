"""The evolution engine: archive, selection, loop.

`grace.evolve` is also the API entry point: calling this package runs `grace.api.evolve`, so
`grace.evolve(task=..., demos=...)` and `import grace.evolve.archive` both work.
"""

from __future__ import annotations

import sys
import types
from typing import Any


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from grace.api import evolve

        return evolve(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
