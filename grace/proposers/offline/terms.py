"""Typed reward terms over an observation schema: the offline operator's representation.

A reward program of the offline operator is a sum of *terms*; every term is one readable line
and one named component. A term is a *shape* applied to a scalar *feature*:

- features: a scalar field `s_next.f` (or a derived scalar of the schema, read the same way); a
  vector field reduced over `axis=-1` (`norm`, `vsum`); one channel of one cell of a grid field
  (`s_next.image[..., 3, 5, 0]`: the object id in front of a BabyAI agent);
  the angle of a cos/sin field pair (`xp.arctan2(sin, cos)`); a product or difference of two
  fields; the summed cosine of a chain of two angles (`c1 + (c1*c2 - s1*s2)`, e.g. a link tip
  height); continuous action effort `xp.sum(a ** 2, axis=-1)`; a discrete action indicator.
- shapes: closeness `-w*|v - c|`, a cost `-cost*v` (its weight is a `cost_` key, >= 0: how action
  effort enters, never as a bonus), squared `-w*(v - c)**2`, Gaussian bump
  `w*exp(-((v - c)/s)**2)`, thresholds `w*where(v > t, 1, 0)` / `<`, linear `w*v`, and for
  angles `w*cos(v - c)`.
- a term may be gated by another feature: `where(g > t_g, term, 0.0)`.

Terms render to source text and parse back from it (structural AST matching against the same
templates), so fitted PARAMS values survive a round trip. Values of terms on sample states are
computed here with numpy (this never executes program code).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from grace.program import COST_PREFIX, format_params

_SHAPE_CODE = {
    "abs": "-{w} * xp.abs({v} - {c})",
    "square": "-{w} * ({v} - {c}) ** 2",
    "gauss": "{w} * xp.exp(-((({v} - {c}) / {s}) ** 2))",
    "above": "{w} * xp.where({v} > {t}, 1.0, 0.0)",
    "below": "{w} * xp.where({v} < {t}, 1.0, 0.0)",
    "cos": "{w} * xp.cos({v} - {c})",
    "linear": "{w} * {vp}",
    "cost": "-{w} * {vp}",
}
SHAPE_ROLES = {"abs": "wc", "square": "wc", "gauss": "wcs", "above": "wt", "below": "wt",
                "cos": "wc", "linear": "w", "cost": "w"}
_FEATURE_CODE = {
    "chain": "s_next.{0} + (s_next.{0} * s_next.{2} - s_next.{1} * s_next.{3})",
    "angle": "xp.arctan2(s_next.{1}, s_next.{0})",
    "norm": "xp.linalg.norm(s_next.{0}, axis=-1)",
    "vsum": "xp.sum(s_next.{0}, axis=-1)",
    "prod": "s_next.{0} * s_next.{1}",
    "diff": "s_next.{0} - s_next.{1}",
    "effort": "xp.sum(a ** 2, axis=-1)",
    "act": "xp.where(a == {0}, 1.0, 0.0)",
    "field": "s_next.{0}",
    "cell": "s_next.{0}[..., {1}, {2}, {3}]",
}
_NARGS = {"chain": 4, "angle": 2, "norm": 1, "vsum": 1, "prod": 2, "diff": 2, "effort": 0,
          "act": 1, "field": 1, "cell": 4}
_COMPOUND = {"chain", "prod", "diff"}
_GATE_CODE = {">": "xp.where({g} > {t}, {inner}, 0.0)", "<": "xp.where({g} < {t}, {inner}, 0.0)"}
RESERVED = {"s", "a", "s_next", "p", "xp", "PARAMS", "reward", "debug", "raw"}


@dataclass(frozen=True)
class Feature:
    """A scalar-valued expression of the transition."""

    kind: str
    args: tuple[Any, ...] = ()

    @property
    def code(self) -> str:
        return _FEATURE_CODE[self.kind].format(*self.args)

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(a for a in self.args if isinstance(a, str))

    @property
    def slug(self) -> str:
        """A readable identifier for the component and its PARAMS."""
        k, g = self.kind, self.args
        if k == "field":
            return g[0]
        if k in ("norm", "vsum"):
            return f"{g[0]}_{k}"
        if k == "angle":
            return _pair_base(g[0], g[1]) + "_angle"
        if k == "chain":
            return f"{_pair_base(g[0], g[1])}_{_pair_base(g[2], g[3])}_chain"
        if k == "prod":
            return f"{g[0]}_x_{g[1]}"
        if k == "diff":
            return f"{g[0]}_minus_{g[1]}"
        if k == "effort":
            return "action_effort"
        if k == "cell":
            return f"{g[0]}_{g[1]}_{g[2]}_{g[3]}"
        return f"action_{g[0]}"

    @property
    def label(self) -> str:
        """Plain-English name for docstrings."""
        k, g = self.kind, self.args
        labels = {"norm": f"|{g[0]}|" if g else "", "vsum": f"sum of {g[0]}" if g else "",
                  "prod": f"{g[0]}*{g[1]}" if len(g) > 1 else "",
                  "diff": f"{g[0]} - {g[1]}" if len(g) > 1 else "", "effort": "action effort",
                  "act": f"action {g[0]}" if g else ""}
        if k == "angle":
            return f"{_pair_base(g[0], g[1])} angle"
        if k == "chain":
            a, b = _pair_base(g[0], g[1]), _pair_base(g[2], g[3])
            return f"cos({a}) + cos({a}+{b})"
        if k == "cell":
            return f"{g[0]} cell ({g[1]}, {g[2]}) channel {g[3]}"
        return labels.get(k, g[0] if g else k)

    @property
    def evaluable(self) -> bool:
        return self.kind not in ("effort", "act")

    def values(self, data: dict[str, np.ndarray]) -> np.ndarray:
        """The feature on sample states {field: (N,) or (N, k)} (state-only features)."""
        k = self.kind
        x = [np.asarray(data[n], dtype=float) for n in self.fields]
        if k == "field":
            return x[0]
        if k == "norm":
            return np.linalg.norm(x[0], axis=-1)
        if k == "vsum":
            return np.sum(x[0], axis=-1)
        if k == "angle":
            return np.arctan2(x[1], x[0])
        if k == "prod":
            return x[0] * x[1]
        if k == "diff":
            return x[0] - x[1]
        if k == "chain":
            return x[0] + (x[0] * x[2] - x[1] * x[3])
        if k == "cell":
            return x[0][:, self.args[1], self.args[2], self.args[3]]
        raise ValueError(f"feature {k} depends on the action")


@dataclass(frozen=True)
class Term:
    """shape(feature; params), optionally gated by `gate = (feature, '>'|'<', threshold)`."""

    shape: str
    feature: Feature
    params: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    gate: tuple[Feature, str, float] | None = field(default=None, compare=False, hash=False)

    @property
    def key(self) -> tuple[str, Feature]:
        return (self.shape, self.feature)

    def with_params(self, **kw: float) -> Term:
        return replace(self, params={**self.params, **kw})

    def describe(self, name: str | None = None) -> str:
        """Plain words for the docstring. Constants are named by their PARAMS key, not their value:
        fitting moves the values after the program is written, and the summary must stay true."""
        lab, pr = self.feature.label, self.params
        key = (lambda r: f"{r}_{name}") if name else (lambda r: _num(pr.get(r, 0.0)))
        if self.shape in ("abs", "square", "gauss", "cos"):
            text = f"{lab} near {key('c')}"
        elif self.shape in ("above", "below"):
            text = f"{lab} {self.shape} {key('t')}"
        elif self.shape == "cost":
            text = f"{lab} as a cost"
        else:
            text = f"{'high' if pr.get('w', 1.0) >= 0 else 'low'} {lab}"
        if self.gate is not None:
            gf, op, t = self.gate
            text += f" when {gf.label} {'above' if op == '>' else 'below'} {key('g') if name else _num(t)}"
        return text

    def values(self, data: dict[str, np.ndarray]) -> np.ndarray:
        """The term's value on sample states (numpy mirror of the rendered code)."""
        v, pr = self.feature.values(data), self.params
        w, c = pr.get("w", 1.0), pr.get("c", 0.0)
        with np.errstate(all="ignore"):
            out = {
                "abs": lambda: -w * np.abs(v - c),
                "square": lambda: -w * (v - c) ** 2,
                "gauss": lambda: w * np.exp(-(((v - c) / (pr.get("s", 1.0) or 1e-9)) ** 2)),
                "above": lambda: w * (v > pr.get("t", 0.0)),
                "below": lambda: w * (v < pr.get("t", 0.0)),
                "cos": lambda: w * np.cos(v - c),
                "linear": lambda: w * v,
                "cost": lambda: -w * v,
            }[self.shape]()
            if self.gate is not None:
                gv = self.gate[0].values(data)
                mask = gv > self.gate[2] if self.gate[1] == ">" else gv < self.gate[2]
                out = np.where(mask, out, 0.0)
        return np.nan_to_num(np.asarray(out, dtype=float), nan=0.0, posinf=1e6, neginf=-1e6)


def _num(x: float) -> str:
    return f"{float(x):.3g}"


def _pair_base(cos_name: str, sin_name: str) -> str:
    base = cos_name.replace("cos", "", 1).strip("_")
    return base or "theta"


def rnd(x: float) -> float:
    """Round a constant to 3 significant digits (readable; the loop fits it anyway)."""
    x = float(x)
    return 0.0 if not np.isfinite(x) or x == 0 else float(f"{x:.3g}")


# -- rendering ------------------------------------------------------------------------------
def term_names(terms: list[Term]) -> list[str]:
    """Unique variable / component names, one per term."""
    names: list[str] = []
    for t in terms:
        base = t.feature.slug
        base = f"r_{base}" if base in RESERVED else base
        name = base if base not in names else f"{base}_{t.shape}"
        i = 2
        while name in names:
            name, i = f"{base}_{t.shape}{i}", i + 1
        names.append(name)
    return names


def _prefix(shape: str, role: str) -> str:
    """The PARAMS key prefix of a role: a cost's weight is a `cost_` key (kept >= 0 by the fitter)."""
    return COST_PREFIX.rstrip("_") if shape == "cost" and role == "w" else role


def term_code(t: Term, pnames: dict[str, str], feature_code: str | None = None,
              gate_code: str | None = None) -> str:
    """The expression of one term; `pnames` maps roles (w, c, s, t, g) to PARAMS keys."""
    v = t.feature.code if feature_code is None else feature_code
    compound = t.feature.kind in _COMPOUND or feature_code is not None
    slots = {r: f'p["{pnames[r]}"]' for r in SHAPE_ROLES[t.shape]}
    expr = _SHAPE_CODE[t.shape].format(v=v, vp=f"({v})" if compound else v, **slots)
    if t.gate is not None:
        g = t.gate[0].code if gate_code is None else gate_code
        expr = _GATE_CODE[t.gate[1]].format(g=g, t=f'p["{pnames["g"]}"]', inner=expr)
    return expr


def render(terms: list[Term]) -> str:
    """A complete, contract-conforming reward module for a list of terms."""
    names = term_names(terms)
    params: dict[str, float] = {}
    lines = []
    # Every term is linear in its weight, so dividing all weights by the largest |w| rescales
    # the reward without changing its fitness (scale-invariant): weights stay readable (<= 1)
    # instead of drifting with each round of PARAMS fitting.
    top = max((abs(t.params.get("w", 1.0)) for t in terms), default=1.0) or 1.0
    for t, name in zip(terms, names, strict=True):
        roles = {r: f"{_prefix(t.shape, r)}_{name}" for r in SHAPE_ROLES[t.shape] + ("g" if t.gate else "")}
        for r in SHAPE_ROLES[t.shape]:
            value = t.params.get(r, 1.0 if r in "ws" else 0.0)
            params[roles[r]] = rnd(value / top if r == "w" else value)
        if t.gate is not None:
            params[roles["g"]] = rnd(t.gate[2])
        lines.append(f"    {name} = {term_code(t, roles)}")
    total = " + ".join(names)
    comps = ", ".join(f'"{n}": {n}' for n in names)
    doc = "Reward: " + ", ".join(t.describe(n) for t, n in zip(terms, names, strict=True)) + "."
    return (f'"""{doc}"""\n\n{format_params(params)}\n\n\n'
            "def reward(s, a, s_next, p):\n" + "\n".join(lines)
            + f"\n    return {total}, {{{comps}}}\n")


# -- parsing back ---------------------------------------------------------------------------
def _unify(t: Any, n: Any, b: dict[str, Any]) -> bool:
    """Structural match of template `t` against node `n`; `__x` placeholders bind."""
    if isinstance(t, ast.Name) and t.id.startswith("__"):
        if t.id in b:
            return ast.dump(b[t.id]) == ast.dump(n)
        b[t.id] = n
        return True
    if isinstance(t, ast.Constant) and isinstance(t.value, str) and t.value.startswith("__"):
        if not (isinstance(n, ast.Constant) and isinstance(n.value, str)):
            return False
        return b.setdefault(t.value, n.value) == n.value
    if type(t) is not type(n):
        return False
    for name, tv in ast.iter_fields(t):
        if name == "ctx":
            continue
        nv = getattr(n, name, None)
        if isinstance(tv, list):
            if not isinstance(nv, list) or len(tv) != len(nv):
                return False
            if not all(_unify(x, y, b) for x, y in zip(tv, nv, strict=True)):
                return False
        elif isinstance(tv, ast.AST):
            if not _unify(tv, nv, b):
                return False
        elif isinstance(tv, str) and name == "attr" and tv.startswith("__"):
            if not isinstance(nv, str) or b.setdefault(tv, nv) != nv:
                return False
        elif tv != nv:
            return False
    return True


def _template(code: str) -> ast.expr:
    return ast.parse(code, mode="eval").body


_FEATURE_T = {k: _template(c.format(*[f"__a{i}" for i in range(_NARGS[k])]))
              for k, c in _FEATURE_CODE.items()}
_SHAPE_T = {k: _template(term_code(Term(k, Feature("field", ("__F",))),
                                   {r: f"__{r}" for r in SHAPE_ROLES[k]}).replace("s_next.__F", "__F"))
            for k in _SHAPE_CODE}
_GATE_T = {op: _template(c.format(g="__G", t='p["__g"]', inner="__T")) for op, c in _GATE_CODE.items()}


def parse_feature(node: ast.AST, schema: Any, action: Any) -> Feature | None:
    sizes = {f.name: f.size for f in schema.fields if not f.shape}
    sizes |= {d.name: 1 for d in getattr(schema, "derived", ())}
    grids = {f.name: f.shape for f in schema.fields if f.shape}
    for kind, tmpl in _FEATURE_T.items():
        b: dict[str, Any] = {}
        if not _unify(tmpl, node, b):
            continue
        args: list[Any] = []
        for i in range(_NARGS[kind]):
            v = b[f"__a{i}"]
            if isinstance(v, ast.Constant) and isinstance(v.value, int):
                args.append(int(v.value))
            elif isinstance(v, str):
                args.append(v)
            else:
                return None
        feat = Feature(kind, tuple(args))
        if kind == "cell":
            shape = grids.get(str(args[0]), ())
            ok = len(shape) == 3 and all(isinstance(x, int) and 0 <= x < n for x, n in zip(args[1:], shape, strict=True))
            return feat if ok else None
        vector = kind in ("norm", "vsum")
        for f in feat.fields:
            if f not in sizes or (sizes[f] < 2 if vector else sizes[f] != 1):
                return None
        if kind == "effort" and action.kind != "continuous":
            return None
        if kind == "act" and (action.kind != "discrete" or not isinstance(args[0], int)):
            return None
        return feat
    return None


def parse_term(node: ast.expr, params: dict[str, float], schema: Any, action: Any) -> Term | None:
    gate = None
    for op, tmpl in _GATE_T.items():
        b: dict[str, Any] = {}
        if _unify(tmpl, node, b) and b["__g"] in params:
            gf = parse_feature(b["__G"], schema, action)
            if gf is None or not gf.evaluable:
                return None
            gate, node = (gf, op, params[b["__g"]]), b["__T"]
            break
    for shape, tmpl in _SHAPE_T.items():
        b = {}
        if not _unify(tmpl, node, b):
            continue
        feat = parse_feature(b["__F"], schema, action)
        keys = {r: b.get(f"__{r}") for r in SHAPE_ROLES[shape]}
        if feat is None or any(k not in params for k in keys.values()):
            continue
        if shape == "cos" and feat.kind != "angle":
            continue
        return Term(shape, feat, {r: params[k] for r, k in keys.items()}, gate)
    return None


def parse_program(program: Any, schema: Any, action: Any) -> list[Term] | None:
    """Terms of a program in the offline operator's form, or None if it is not in that form."""
    try:
        fn = program.functions.get("reward")
        params = program.params
    except Exception:  # noqa: BLE001 - an unparseable program is simply not ours
        return None
    if fn is None or [x.arg for x in fn.args.args] != ["s", "a", "s_next", "p"]:
        return None
    body = list(fn.body)
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
        body = body[1:]
    if not body or not isinstance(body[-1], ast.Return):
        return None
    terms, names = [], []
    for stmt in body[:-1]:
        if not (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1
                and isinstance(stmt.targets[0], ast.Name)):
            return None
        term = parse_term(stmt.value, params, schema, action)
        if term is None:
            return None
        terms.append(term)
        names.append(stmt.targets[0].id)
    ret = body[-1].value
    total = ret.elts[0] if isinstance(ret, ast.Tuple) and len(ret.elts) == 2 else ret
    summed: list[str] = []
    while isinstance(total, ast.BinOp) and isinstance(total.op, ast.Add):
        if not isinstance(total.right, ast.Name):
            return None
        summed.insert(0, total.right.id)
        total = total.left
    if not isinstance(total, ast.Name):
        return None
    summed.insert(0, total.id)
    if sorted(summed) != sorted(names) or not terms:
        return None
    return terms
