"""The reward contract as a grammar, for servers that constrain decoding (llama.cpp's GBNF).

`program_grammar(schema, xp_names)` builds, from the task's observation schema, a grammar whose
every sentence is a fenced program the contract validator accepts: a one-line docstring, one
`PARAMS` literal with a fixed set of keys (one weight per scalar field, capped, plus `scale` and
`offset`: so every `p["..."]` the body may read is a key), and `def reward(s, a, s_next, p):`
returning one expression over the task's fields (`s.<field>`, `s_next.<field>`), PARAMS entries,
numbers and allow-listed `xp` functions, nested at most DEPTH levels (a model cut off by max_tokens
mid-expression writes no program); vector fields appear only inside a reduction over `axis=-1`,
so the result is one float per transition. The same rules render to GBNF (`gbnf`) and
expand to random sentences (`sample`, which the tests validate with the contract validator).
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass

from grace.tasks.spec import ObsSchema

UNARY = ("abs", "exp", "tanh", "square", "cos", "sin", "sigmoid")
"""Elementwise `xp` functions of one argument the grammar may use (those the policy allows;
defined on every real number, so no program of the grammar takes a square root of a negative)."""
BINARY = ("minimum", "maximum")
MAX_WEIGHTS = 8
"""Scalar fields that get their own PARAMS weight (`w_<field>`); the others share `scale`."""
DEPTH = 3
"""Nesting levels of expressions (parentheses and calls): bounded, so a program ends well within
a few hundred tokens instead of running into max_tokens mid-expression."""
TERMS = (5, 3, 2)
"""Most terms (a + b - ...) of an expression at each nesting level."""


@dataclass(frozen=True)
class Lit:
    text: str


@dataclass(frozen=True)
class Ref:
    name: str


@dataclass(frozen=True)
class Cls:
    """A character class: `spec` in GBNF syntax, `chars` what `sample` picks from."""

    spec: str
    chars: str


@dataclass(frozen=True)
class Rep:
    """`items` repeated lo..hi times."""

    items: tuple[Item, ...]
    lo: int
    hi: int


Item = Lit | Ref | Cls | Rep
Rules = dict[str, list[tuple[Item, ...]]]


def _lits(words: Iterable[str]) -> list[tuple[Item, ...]]:
    return [(Lit(w),) for w in words]


def _scalars(schema: ObsSchema) -> list[str]:
    """Scalar fields, then the schema's derived scalars (read the same way: `s.front_is_target`)."""
    return [f.name for f in schema.fields if f.size == 1] + [d.name for d in schema.derived]


def param_keys(schema: ObsSchema) -> list[str]:
    """The PARAMS keys every grammar program has, in order."""
    scalars = _scalars(schema)[:MAX_WEIGHTS]
    return [f"w_{name}" for name in scalars] + ["scale", "offset"]


def program_rules(schema: ObsSchema, xp_names: Iterable[str]) -> Rules:
    """The grammar's rules (start symbol `root`)."""
    allowed = set(xp_names)
    unary = [f for f in UNARY if f in allowed]
    binary = [f for f in BINARY if f in allowed]
    scalars = _scalars(schema)
    vectors = [f.name for f in schema.fields if f.size > 1 and not f.shape]  # a grid is no vector
    keys = param_keys(schema)
    params: list[Item] = [Lit("PARAMS = {")]
    for i, key in enumerate(keys):
        params += [Lit(("" if i == 0 else ", ") + f'"{key}": '), Ref("number")]
    params.append(Lit("}\n"))
    leaves: list[tuple[Item, ...]] = [(Ref("number"),), (Lit('p["'), Ref("pkey"), Lit('"]'))]
    if scalars:
        leaves.append((Ref("state"), Ref("sfield")))
    if vectors and "linalg.norm" in allowed:
        leaves.append((Lit("xp.linalg.norm("), Ref("state"), Ref("vfield"), Lit(", axis=-1)")))
    if vectors and {"sum", "square"} <= allowed:
        leaves.append((Lit("xp.sum(xp.square("), Ref("state"), Ref("vfield"), Lit("), axis=-1)")))
    rules: Rules = {
        "root": [(Lit("```python\n"), Ref("doc"), Lit("\n"), *params, Lit("\n\ndef reward(s, a, s_next, p):\n"),
                  Lit("    return "), Ref("expr0"), Lit("\n```"))],
        "doc": [(Lit('"""'), Cls("A-Za-z", "abcdefghRewardPole"),
                 Rep((Cls("a-zA-Z0-9 ,.;:()+*/'", "abcde fghij,.:"),), 0, 80), Lit('"""\n'))],
        "addop": _lits((" + ", " - ")),
        "mulop": _lits((" * ", " / ")),
        "number": [(Lit("0"), Ref("frac")), (Cls("1-9", "123456789"), Rep((Ref("digit"),), 0, 2), Ref("frac"))],
        "frac": [(Rep((Lit("."), Ref("digit"), Rep((Ref("digit"),), 0, 3)), 0, 1),)],
        "digit": [(Cls("0-9", "0123456789"),)],
        "pkey": _lits(keys),
        "state": _lits(("s_next.", "s.")),
    }
    for d in range(DEPTH):
        inner = f"expr{d + 1}"
        atom = list(leaves)
        if d + 1 < DEPTH:  # the deepest level holds leaves only: nesting is bounded
            atom.append((Lit("("), Ref(inner), Lit(")")))
            atom += [(Lit(f"xp.{f}("), Ref(inner), Lit(")")) for f in unary]
            atom += [(Lit(f"xp.{f}("), Ref(inner), Lit(", "), Ref(inner), Lit(")")) for f in binary]
        rules[f"expr{d}"] = [(Ref(f"term{d}"), Rep((Ref("addop"), Ref(f"term{d}")), 0, TERMS[d] - 1))]
        rules[f"term{d}"] = [(Ref(f"factor{d}"), Rep((Ref("mulop"), Ref(f"factor{d}")), 0, 1))]
        rules[f"factor{d}"] = [(Ref(f"atom{d}"),), (Lit("-"), Ref(f"atom{d}"))]
        rules[f"atom{d}"] = atom
    if scalars:
        rules["sfield"] = _lits(scalars)
    if vectors:
        rules["vfield"] = _lits(vectors)
    return rules


def _gbnf_item(item: Item) -> str:
    if isinstance(item, Lit):
        return '"' + item.text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(item, Ref):
        return item.name
    if isinstance(item, Cls):
        return "[" + item.spec + "]"
    inner = " ".join(_gbnf_item(i) for i in item.items)
    return f"({inner}){{{item.lo},{item.hi}}}"


def gbnf(rules: Rules) -> str:
    """The rules in llama.cpp's GBNF."""
    return "\n".join(f"{name} ::= " + " | ".join(" ".join(_gbnf_item(i) for i in seq) for seq in alts)
                     for name, alts in rules.items()) + "\n"


def program_grammar(schema: ObsSchema, xp_names: Iterable[str]) -> str:
    """The GBNF grammar of reward programs for `schema`."""
    return gbnf(program_rules(schema, xp_names))


def sample(rules: Rules, rng: random.Random, symbol: str = "root", depth: int = 0) -> str:
    """A random sentence of the grammar (deep recursion takes each rule's first alternative)."""
    alts = rules[symbol]
    seq = alts[0] if depth > 6 else rng.choice(alts)
    return "".join(_expand(rules, item, rng, depth + 1) for item in seq)


def _expand(rules: Rules, item: Item, rng: random.Random, depth: int) -> str:
    if isinstance(item, Lit):
        return item.text
    if isinstance(item, Ref):
        return sample(rules, rng, item.name, depth)
    if isinstance(item, Cls):
        return rng.choice(item.chars)
    times = rng.randint(item.lo, item.lo if depth > 6 else item.hi)
    return "".join(_expand(rules, i, rng, depth) for _ in range(times) for i in item.items)
