"""The built-in offline search operator: typed term programs over the observation schema.

`OfflineProposer` needs no LLM. It reads the TaskContext's sample states (or per-field class
statistics), scores candidate terms by how well they rank expert states above non-expert ones
(grace.proposers.offline.features), and writes readable reward modules, one named component per term
(grace.proposers.offline.terms). Operators:

- init: the greedy forward-selected sum and its prefixes, the best single terms, pairs of good
  terms, and quality-weighted random sums: a diverse population of 1..max_terms terms.
- mutate: add a term (steered by the parent's worst-scored examples), remove one, replace a
  term's feature or shape (abs <-> square <-> gauss <-> threshold <-> linear), flip a threshold,
  combine two terms into a product or a gate, add an action term, perturb a constant. Programs
  outside the grammar get generic AST edits (grace.proposers.offline.astmut).
- crossover: a random subset of each parent's terms, deduplicated by (shape, feature).
- simplify: drop the term with the smallest contribution, merge duplicates, drop unused PARAMS.
- densify: the same terms with a slope in every state (gates dropped; a bump becomes closeness, a
  threshold a linear term) for PPO in the loop to weigh against the sharper original.
- shaping: add (or replace) a `potential(s, p)` that rises along expert episodes and stays above
  random ones at equal time (grace.proposers.offline.potential); a mutation when none does.

Deterministic: the same inputs and seed give the same proposal (random.Random(seed) only).
Constants are only initialised sensibly; the loop fits PARAMS for every candidate.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from typing import Any

from grace.program import ProgramError, RewardProgram
from grace.proposers.base import Feedback, Proposal, TaskContext
from grace.proposers.offline.astmut import add_term_line, generic_mutate, generic_simplify
from grace.proposers.offline.features import Analysis, analyse, context_key, guided_terms
from grace.proposers.offline.potential import reward_spread, search_potential, with_potential
from grace.proposers.offline.terms import Feature, Term, parse_program, render, rnd, term_names

_MUTATIONS = {"add_term": 3.0, "remove_term": 1.5, "replace_field": 1.5, "swap_shape": 2.0,
              "flip_threshold": 0.7, "combine_product": 0.6, "combine_gate": 0.8,
              "add_action": 0.4, "perturb_const": 0.3}


class OfflineProposer:
    """Built-in operator (name "offline"): a real search over typed reward terms, no LLM."""

    name = "offline"
    reask_duplicates = 3
    """Cheap and deterministic: re-asked with a new seed when it repeats scored logic."""
    concurrency = None

    def __init__(self, max_terms: int = 6) -> None:
        self.max_terms = max(1, int(max_terms))
        self._cache: OrderedDict[str, Analysis] = OrderedDict()

    # -- helpers ---------------------------------------------------------------------------
    def analysis(self, ctx: TaskContext) -> Analysis:
        """The (cached) data analysis of a task context."""
        key = context_key(ctx)
        if key not in self._cache:
            self._cache[key] = analyse(ctx)
            while len(self._cache) > 4:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def _terms(self, ctx: TaskContext, fb: Feedback) -> list[Term] | None:
        return parse_program(fb.program, ctx.schema, ctx.action)

    @staticmethod
    def _pid(fb: Feedback) -> str:
        if fb.program_id:
            return fb.program_id
        try:
            return fb.program.program_id
        except ValueError:
            return ""

    @staticmethod
    def _dedupe(terms: list[Term]) -> list[Term]:
        seen, out = set(), []
        for t in terms:
            if t.key not in seen:
                seen.add(t.key)
                out.append(t)
        return out

    def _valid(self, ctx: TaskContext, src: str) -> RewardProgram | None:
        try:
            return RewardProgram(src).validate(ctx.schema)
        except ValueError:
            return None

    # -- init ------------------------------------------------------------------------------
    async def init(self, ctx: TaskContext, n: int, seed: int) -> list[Proposal]:
        """`n` distinct programs: greedy best, its prefixes, best singles, pairs, random sums."""
        an, rng = self.analysis(ctx), random.Random(seed)
        out: list[Proposal] = []
        ids: set[str] = set()

        def add(terms: list[Term], how: str) -> None:
            terms = self._dedupe(terms)[: self.max_terms]
            if len(out) >= n or not terms:
                return
            prog = self._valid(ctx, render(terms))
            if prog is None or prog.program_id in ids:
                return
            ids.add(prog.program_id)
            meta = {"mutation": how, "terms": len(terms), "fields": [t.feature.slug for t in terms],
                    "data": an.source, "est_auc": round(an.score(terms), 4)}
            out.append(Proposal(prog.source, "init", (), meta=meta))

        best = an.greedy(self.max_terms)
        add(best, "init_greedy")
        singles = [t for i, t in enumerate(an.terms) if t.feature not in {u.feature for u in an.terms[:i]}]
        add(singles[:1], "init_single")
        if an.action_terms and ctx.action.kind == "continuous":
            add(best + an.action_terms[:1], "init_greedy_action")
        for k in range(len(best) - 1, 0, -1):
            add(best[:k], "init_prefix")
        for t in singles[1:4]:
            add([t], "init_single")
        for first in singles[1:3]:
            add(an.greedy(min(3, self.max_terms), start=[first]), "init_greedy_from")
        for i, j in [(0, 1), (0, 2), (1, 2), (0, 3), (1, 3)]:
            if j < len(singles):
                add([singles[i], singles[j]], "init_pair")
        weights = [math.exp(12 * (an.quality.get(t.key, 0.5) - 0.5)) for t in an.terms]
        attempts = 0
        while len(out) < n and attempts < 50 * n:
            attempts += 1
            k = rng.randint(1, min(self.max_terms, 1 + attempts // 10 + rng.randint(0, 2)))
            picked: list[Term] = []
            for t in rng.choices(an.terms, weights=weights, k=3 * k):
                if len(picked) < k and t.feature not in {u.feature for u in picked}:
                    picked.append(t)
            if an.action_terms and rng.random() < 0.15:
                picked.append(rng.choice(an.action_terms))
            add(picked, "init_random")
        return out[:n]

    # -- mutate ----------------------------------------------------------------------------
    async def mutate(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        """A typed term mutation of `parent` (generic AST edits if it is not in term form)."""
        an, pid = self.analysis(ctx), self._pid(parent)
        terms = self._terms(ctx, parent)
        for attempt in range(12):
            rng = random.Random(f"{seed}:{attempt}")
            try:
                if terms is None:
                    new_term = self._guided(an, ctx, parent, set(), rng)
                    src, meta = generic_mutate(parent.program, ctx.schema, rng, new_term)
                else:
                    new_terms, meta = self._mutate_terms(an, ctx, parent, terms, rng)
                    src = render(self._dedupe(new_terms)[: self.max_terms])
            except ValueError:
                continue
            prog = self._valid(ctx, src)
            if prog is not None and (prog.program_id != pid or meta["mutation"] == "perturb_const"):
                return Proposal(prog.source, "mutate", (pid,), meta=meta)
        fresh = an.greedy(2, start=[random.Random(seed).choice(an.terms[:10])])
        return Proposal(render(fresh), "mutate", (pid,), meta={"mutation": "restart"})

    def _guided(self, an: Analysis, ctx: TaskContext, parent: Feedback, exclude: set[Feature],
                rng: random.Random) -> Term:
        """A term to add, drawn among the best fixes for the parent's worst examples."""
        scored = guided_terms(an, parent.worst, ctx.schema, exclude)[:8]
        if not scored:
            raise ValueError("no term left to add")
        weights = [math.exp(2 * (s - scored[0][0])) for s, _ in scored]
        return rng.choices([t for _, t in scored], weights=weights)[0]

    def _mutate_terms(self, an: Analysis, ctx: TaskContext, parent: Feedback, terms: list[Term],
                      rng: random.Random) -> tuple[list[Term], dict[str, Any]]:
        ops = dict(_MUTATIONS)
        if len(terms) >= self.max_terms:
            ops.pop("add_term")
        if len(terms) < 2:
            for k in ("remove_term", "combine_product", "combine_gate"):
                ops.pop(k)
        if not any(t.shape in ("above", "below") or t.gate for t in terms):
            ops.pop("flip_threshold")
        if not an.action_terms or any(not t.feature.evaluable for t in terms):
            ops.pop("add_action")
        kind = rng.choices(list(ops), weights=list(ops.values()))[0]
        terms = list(terms)
        i = rng.randrange(len(terms))
        t = terms[i]
        meta: dict[str, Any] = {"mutation": kind}
        if kind == "add_term":
            new = self._guided(an, ctx, parent, {u.feature for u in terms}, rng)
            meta["field"] = new.feature.slug
            meta["shape"] = new.shape
            return terms + [new], meta
        if kind == "remove_term":
            meta["field"] = terms.pop(i).feature.slug
            return terms, meta
        if kind == "add_action":
            new = rng.choice(an.action_terms)
            meta["field"] = new.feature.slug
            return terms + [new], meta
        if kind == "replace_field":
            used = {u.feature for u in terms}
            pool = [u for u in an.terms[:60] if u.shape == t.shape and u.feature not in used]
            if not pool:
                raise ValueError("no replacement feature")
            new = rng.choice(pool[:8])
            terms[i] = Term(new.shape, new.feature, new.params, t.gate)
            meta.update({"from": t.feature.slug, "field": new.feature.slug})
            return terms, meta
        if kind == "swap_shape":
            if not t.feature.evaluable:
                raise ValueError("action terms have one shape")
            shapes = [s for s in an.shapes_for(t.feature) if s != t.shape]
            ranked = sorted(shapes, key=lambda s: -an.quality.get((s, t.feature), 0.5))
            shape = rng.choice(ranked[:3])
            new = an.make(shape, t.feature)
            if "c" in new.params and "c" in t.params:
                new = new.with_params(c=t.params["c"])
            terms[i] = Term(shape, t.feature, new.params, t.gate)
            meta.update({"field": t.feature.slug, "from": t.shape, "to": shape})
            return terms, meta
        if kind == "flip_threshold":
            cands = [j for j, u in enumerate(terms) if u.shape in ("above", "below") or u.gate]
            j = rng.choice(cands)
            u = terms[j]
            if u.shape in ("above", "below") and (u.gate is None or rng.random() < 0.5):
                terms[j] = Term("below" if u.shape == "above" else "above", u.feature, u.params, u.gate)
            else:
                gf, op, g = u.gate  # type: ignore[misc]
                terms[j] = Term(u.shape, u.feature, u.params, (gf, "<" if op == ">" else ">", g))
            meta["field"] = u.feature.slug
            return terms, meta
        if kind == "perturb_const":
            if not t.params:
                raise ValueError("no constants")
            role = rng.choice(sorted(t.params))
            v = t.params[role]
            scale = float(abs(v)) or 1.0
            nv = v * math.exp(rng.gauss(0, 0.4)) if role in "ws" else v + rng.gauss(0, 0.3) * scale
            terms[i] = t.with_params(**{role: rnd(nv)})
            meta.update({"field": t.feature.slug, "param": role})
            return terms, meta
        j = rng.choice([k for k in range(len(terms)) if k != i])
        u = terms[j]
        scalar = [x for x in (t, u) if x.feature.kind == "field"]
        if kind == "combine_product":
            if len(scalar) < 2:
                raise ValueError("product needs two plain fields")
            feat = Feature("prod", (t.feature.args[0], u.feature.args[0]))
            shape = max(an.shapes_for(feat), key=lambda s: an.score([an.make(s, feat)]))
            new = an.make(shape, feat)
            terms = [x for k, x in enumerate(terms) if k not in (i, j)] + [new]
            meta.update({"field": feat.slug, "shape": shape})
            return terms, meta
        # combine_gate: term j only counts where term i's feature is on the expert side
        if not t.feature.evaluable or u.gate is not None:
            raise ValueError("cannot gate")
        above, below = an.make("above", t.feature), an.make("below", t.feature)
        qa, qb = an.score([above]), an.score([below])
        op, thr = (">", above.params["t"]) if qa >= qb else ("<", below.params["t"])
        terms[j] = Term(u.shape, u.feature, u.params, (t.feature, op, thr))
        meta.update({"field": u.feature.slug, "gate": t.feature.slug})
        return terms, meta

    # -- crossover -------------------------------------------------------------------------
    async def crossover(self, ctx: TaskContext, a: Feedback, b: Feedback, seed: int) -> Proposal:
        """A random subset of each parent's terms (union, deduplicated by shape and feature)."""
        an, rng = self.analysis(ctx), random.Random(seed)
        parents = (self._pid(a), self._pid(b))
        ta, tb = self._terms(ctx, a), self._terms(ctx, b)
        if ta is not None and tb is not None:
            for _ in range(10):
                pick_a = [t for t in ta if rng.random() < 0.5] or [rng.choice(ta)]
                pick_b = [t for t in tb if rng.random() < 0.5] or [rng.choice(tb)]
                child = self._dedupe(pick_a + pick_b)
                rng.shuffle(child)
                child = child[: self.max_terms]
                prog = self._valid(ctx, render(child))
                if prog is not None and prog.program_id not in parents:
                    meta = {"mutation": "term_crossover", "from_a": len(pick_a), "from_b": len(pick_b)}
                    return Proposal(prog.source, "crossover", parents, meta=meta)
            return Proposal(render(self._dedupe(ta + tb)[: self.max_terms]), "crossover", parents,
                            meta={"mutation": "term_union"})
        # one or both parents are outside the grammar: graft terms into the foreign program
        host, donor_terms = (b, ta) if ta is not None else (a, tb)
        grafts = donor_terms or [self._guided(an, ctx, b if host is a else a, set(), rng)]
        src = host.program.source
        for t in rng.sample(grafts, k=min(len(grafts), rng.randint(1, 2))):
            try:
                cand = add_term_line(RewardProgram(src), t)
            except (ValueError, SyntaxError):
                continue
            if self._valid(ctx, cand) is not None:
                src = cand
        if self._valid(ctx, src) is None:
            return Proposal(None, "crossover", parents, error="graft produced an invalid program")
        return Proposal(src, "crossover", parents, meta={"mutation": "graft", "generic": True})

    # -- simplify --------------------------------------------------------------------------
    async def simplify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        """Drop the smallest-contribution term, merge duplicates, remove unused PARAMS."""
        pid = self._pid(parent)
        mags = _magnitudes(parent)
        terms = self._terms(ctx, parent)
        if terms is None:
            try:
                src, meta = generic_simplify(parent.program, mags)
            except (ValueError, SyntaxError, StopIteration) as exc:
                return Proposal(None, "simplify", (pid,), error=f"cannot simplify: {exc}")
            if self._valid(ctx, src) is None:
                return Proposal(None, "simplify", (pid,), error="simplified program is invalid")
            return Proposal(src, "simplify", (pid,), meta=meta)
        merged = self._dedupe(terms)
        meta: dict[str, Any] = {"mutation": "merge_duplicates", "merged": len(terms) - len(merged)}
        if len(merged) == len(terms) == 1:
            meta = {"mutation": "noop"}
        if len(merged) == len(terms):
            if len(terms) > 1:
                names = term_names(terms)
                drop = min(range(len(terms)), key=lambda k: (mags.get(names[k], math.inf), -k))
                meta = {"mutation": "drop_term", "field": terms[drop].feature.slug,
                        "by": "component" if mags else "last_added"}
                merged = terms[:drop] + terms[drop + 1:]
            else:
                t = terms[0]
                if t.gate is not None:
                    merged, meta = [Term(t.shape, t.feature, t.params)], {"mutation": "drop_gate"}
                elif t.shape in ("gauss", "square", "cos"):
                    new = Term("abs", t.feature, {"w": 1.0, "c": t.params.get("c", 0.0)})
                    merged, meta = [new], {"mutation": "simpler_shape", "from": t.shape, "to": "abs"}
        return Proposal(render(merged), "simplify", (pid,), meta=meta)


    async def densify(self, ctx: TaskContext, parent: Feedback, seed: int) -> Proposal:
        """Every term with a slope in every state (`dense_term`); an error when the parent is
        outside the term grammar or already dense."""
        pid, terms = self._pid(parent), self._terms(ctx, parent)
        if terms is None:
            return Proposal(None, "densify", (pid,), error="not a term program: nothing to densify")
        dense = [dense_term(t) for t in terms]
        changed = sum(d is not t for d, t in zip(dense, terms, strict=True))
        if not changed:
            return Proposal(None, "densify", (pid,), error="already dense")
        src = render(self._dedupe(dense))
        if self._valid(ctx, src) is None:
            return Proposal(None, "densify", (pid,), error="densified program is invalid")
        return Proposal(src, "densify", (pid,), meta={"mutation": "densify", "changed": changed})

    async def shaping(self, ctx: TaskContext, parent: Feedback, trajectories: list[dict[str, Any]],
                      seed: int) -> Proposal:
        """GRACE step 7 without an LLM: `parent` with the potential learned from `trajectories`
        (the search episodes, labelled expert / negative; `prompt: False` marks them when prompt
        episodes come along). An ordinary mutation when no potential clearly beats none."""
        search = [t for t in trajectories if not t.get("prompt", True)] or trajectories
        pot = search_potential(search, ctx.schema, reward_spread(trajectories))
        why = "no potential rises along the expert episodes"
        if pot is not None:
            try:
                prog = with_potential(parent.program, pot).validate(ctx.schema)
                return Proposal(prog.source, "shaping", (self._pid(parent),), meta={"mutation": "potential", **pot.meta})
            except ProgramError as exc:
                why = f"the potential could not be added: {exc}"
        prop = await self.mutate(ctx, parent, seed)
        prop.meta.setdefault("note", f"shaping slot: {why}; mutated instead")
        return prop

    async def label_goals(self, ctx: TaskContext, candidates: list[dict[str, Any]],
                          seed: int) -> list[int] | None:
        """The offline operator does not label goals: the task's default positives apply."""
        return None

    async def label_policy(self, ctx: TaskContext, candidates: list[dict[str, Any]],
                           seed: int) -> list[int] | None:
        """The offline operator does not label policy data: every rollout state stays negative."""
        return None

def dense_term(t: Term) -> Term:
    """`t` with a slope wherever it was flat: the gate dropped, a bump rewarding closeness to its
    centre `-w|v - c|`, a threshold the linear term that rises the same way (`w*v` for above,
    `-w*v` for below). A penalty bump (w < 0) and the dense shapes stay (without a gate). The
    same object when nothing changes. Fitting re-fits every constant afterwards."""
    w = float(t.params.get("w", 1.0))
    if t.shape == "gauss" and w > 0:
        return Term("abs", t.feature, {"w": w, "c": t.params.get("c", 0.0)})
    if t.shape in ("above", "below") and t.feature.evaluable:
        return Term("linear", t.feature, {"w": w if t.shape == "above" else -w})
    return Term(t.shape, t.feature, t.params) if t.gate is not None else t


def _magnitudes(fb: Feedback) -> dict[str, float]:
    """Mean |component| over the worst-scored examples (how much each term moved them)."""
    sums: dict[str, list[float]] = {}
    for w in fb.worst:
        for k, v in (w.get("components") or {}).items():
            try:
                sums.setdefault(k, []).append(abs(float(v)))
            except (TypeError, ValueError):
                continue
    return {k: sum(v) / len(v) for k, v in sums.items() if v}
