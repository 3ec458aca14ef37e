"""Named views over observation batches: `s.pole_angle` instead of `s[:, 2]`.

A view wraps an array of shape (B, obs_dim) (or (obs_dim,) under vmap) and exposes one attribute
per schema field: a scalar field is `raw[..., i]`, a vector field `raw[..., i:j]`, a grid field
(`Field.shape`, e.g. (7, 7, 3)) `raw[..., i:j]` reshaped to (B, *shape); `.raw` is the whole
array. Derived scalars (`ObsSchema.derived`, trusted task code) are computed from `raw` on read,
and the schema's named constants (`s.BALL`) are plain ints. Works for numpy and jax arrays alike
(only `...` indexing, `reshape` and operators are used). Reward code reaches fields only through
these attributes (the sandbox allows nothing else on a view).
"""

from __future__ import annotations

from typing import Any

from grace.tasks.spec import Derived, ObsSchema

Index = int | slice | tuple[slice, tuple[int, ...]] | Derived | tuple[str, int]
"""A column, a vector slice, a grid (slice, shape), a derived scalar or a ("const", value)."""


class ObsView:
    __slots__ = ("_raw", "_index")

    def __init__(self, raw: Any, index: dict[str, Index]) -> None:
        object.__setattr__(self, "_raw", raw)
        object.__setattr__(self, "_index", index)

    def __getattr__(self, name: str) -> Any:
        index = object.__getattribute__(self, "_index")
        raw = object.__getattribute__(self, "_raw")
        if name == "raw":
            return raw
        if name in index:
            where = index[name]
            if isinstance(where, (int, slice)):
                return raw[..., where]
            if isinstance(where, Derived):
                return where.fn(raw)
            if where[0] == "const":
                return where[1]
            sl, shape = where
            return raw[..., sl].reshape(raw.shape[:-1] + shape)
        known = ", ".join(sorted(index)) or "(none)"
        raise AttributeError(f"observation has no field {name!r}; fields are: {known}, raw")

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("observation views are read-only")

    def __dir__(self) -> list[str]:
        return [*object.__getattribute__(self, "_index"), "raw"]

    def __repr__(self) -> str:
        return f"ObsView(fields={list(object.__getattribute__(self, '_index'))})"


def field_index(schema: ObsSchema) -> dict[str, Index]:
    """Field name -> integer column (scalar), slice (vector) or (slice, shape) (grid); derived
    scalars and constants follow the fields."""
    out: dict[str, Index] = {}
    for f in schema.fields:
        sl = schema.slices[f.name]
        out[f.name] = (sl, tuple(f.shape)) if f.shape else (sl.start if f.size == 1 else sl)
    for d in schema.derived:
        out[d.name] = d
    for name, value in schema.constants:
        out[name] = ("const", value)
    return out


def view(raw: Any, schema: ObsSchema) -> ObsView:
    return ObsView(raw, field_index(schema))
