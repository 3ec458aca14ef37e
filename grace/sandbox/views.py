"""Named views over observation batches: `s.pole_angle` instead of `s[:, 2]`.

A view wraps an array of shape (B, obs_dim) (or (obs_dim,) under vmap) and exposes one attribute
per schema field: a scalar field is `raw[..., i]`, a vector field `raw[..., i:j]`; `.raw` is the
whole array. Works for numpy and jax arrays alike (only `...` indexing is used). Reward code
reaches fields only through these attributes (the sandbox allows nothing else on a view).
"""

from __future__ import annotations

from typing import Any

from grace.tasks.spec import ObsSchema


class ObsView:
    __slots__ = ("_raw", "_index")

    def __init__(self, raw: Any, index: dict[str, int | slice]) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_index", index)

    def __getattr__(self, name: str) -> Any:
        index = object.__getattribute__(self, "_index")
        if name == "raw":
            return object.__getattribute__(self, "_raw")
        if name in index:
            return object.__getattribute__(self, "_raw")[..., index[name]]
        known = ", ".join(sorted(index)) or "(none)"
        raise AttributeError(f"observation has no field {name!r}; fields are: {known}, raw")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("observation views are read-only")

    def __dir__(self) -> list[str]:
        return [*object.__getattribute__(self, "_index"), "raw"]

    def __repr__(self) -> str:
        return f"ObsView(fields={list(object.__getattribute__(self, '_index'))})"


def field_index(schema: ObsSchema) -> dict[str, int | slice]:
    """Field name -> integer column (scalar) or slice (vector field)."""
    return {f.name: (schema.slices[f.name].start if f.size == 1 else schema.slices[f.name])
            for f in schema.fields}


def view(raw: Any, schema: ObsSchema) -> ObsView:
    return ObsView(raw, field_index(schema))
