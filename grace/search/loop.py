"""The evolution loop: propose -> persist -> validate -> evaluate (sandbox) -> persist -> select.

Proposals and evaluations overlap (asyncio; the sandbox pool evaluates while the proposer
writes). Parents are chosen at generation boundaries from a seeded rng and programs are
numbered (round, generation, slot), so a resumed or replayed run makes the same decisions.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from grace.config import EvolveConfig
from grace.data.trajectories import load_demos
from grace.fitness.base import Fitness
from grace.program import ProgramError, RewardProgram
from grace.proposers.base import BudgetExhausted, Feedback, Proposal, Proposer, TaskContext
from grace.search import negatives as rundata
from grace.search import payment, rounds, shaping
from grace.search.archive import Archive, ProgramRow
from grace.search.best_file import write_best_file
from grace.search.executor import Executor
from grace.search.select import SlotPlan, migrate, penalised, plan_generation, truncate
from grace.search.stats import RunResult, RunStats
from grace.tasks import Task
from grace.types import Example, Transitions


def _seed(cfg: EvolveConfig, rnd: int, gen: int, slot: int) -> int:
    return int(cfg.seed) * 1_000_003 + rnd * 100_003 + gen * 1_009 + slot


class Evolution:
    def __init__(self, cfg: EvolveConfig, run_dir: Path, archive: Archive, task: Task,
                 proposer: Proposer, executor: Executor, fitness: Fitness, progress: Any = None) -> None:
        self.cfg, self.run_dir, self.archive, self.task = cfg, run_dir, archive, task
        self.proposer, self.executor, self.fitness, self.progress = proposer, executor, fitness, progress
        self.stats = RunStats()
        self._events: dict[tuple[int, int, int, str], asyncio.Event] = {}
        self.demos = load_demos(cfg.demos, task, cfg.data.max_demo_mb)
        self.neg_version = 0
        self.ctx: TaskContext | None = None
        self.best: ProgramRow | None = None
        self.data: Transitions | None = None
        self.shaped: shaping.Shaped | None = None
        """The winner with its learned potential (`final_shaping`)."""
        # a cheap deterministic proposer is re-asked (new seed) when it repeats scored logic;
        # an LLM's duplicate costs a call, so it is kept as is (the proposer says which; the
        # config says how often: search.dedupe_retries)
        self.dedupe_retries = cfg.search.dedupe_retries if proposer.reask_duplicates else 0
        concurrency = cfg.search.propose_concurrency or proposer.concurrency or 2 * cfg.sandbox.workers
        self._propose_sem = asyncio.Semaphore(max(1, concurrency))

    # -- data ------------------------------------------------------------------------------
    def load_data(self) -> None:
        cfg = self.cfg
        rundata.ensure_random_negatives(self.archive, self.run_dir, self.task, cfg.data.random_negative_episodes,
                                        cfg.seed, cfg.negatives)
        inputs = rundata.read_run_inputs(self.archive, self.run_dir, self.task, self.demos)
        self.neg_version, negs = inputs.version, inputs.negatives
        data = inputs.dataset(cfg.data, cfg.seed)
        self.data = data
        self.fitness.prepare(data, rundata.return_range(self.demos, negs))
        self.ctx = rundata.task_context(self.task, data, n_examples=cfg.data.context_examples, seed=cfg.seed)

    async def label_goals(self) -> None:
        """GRACE step 1 (opt-in): the LLM labels which expert states solve the task. The labels
        are persisted, so a resumed run uses the same positives."""
        if (not self.cfg.llm.label_goals or self.task.kind != "goal"
                or self.archive.get_meta("goal_labels") is not None):
            return
        assert self.ctx is not None
        cands, keys = rundata.goal_candidates(self.demos, self.task, per_episode=self.cfg.data.goal_candidates,
                                              seed=self.cfg.seed)
        chosen = await self.proposer.label_goals(self.ctx, cands, self.cfg.seed)
        if chosen is None:  # this proposer does not label: keep the task's default positives
            return
        labels = [keys[i] for i in chosen]
        self.archive.set_meta("goal_labels", labels)
        if labels:
            self.load_data()

    # -- one slot --------------------------------------------------------------------------
    def _feedback(self, row: ProgramRow) -> Feedback:
        return Feedback(program=RewardProgram(row.best_source), fitness=row.fitness, metrics=row.metrics,
                        worst=[Example.from_dict(w) for w in row.worst], error=row.error, debug_output=row.debug_output,
                        program_id=row.program_id)

    async def _propose(self, plan: SlotPlan, seed: int) -> Proposal:
        assert self.ctx is not None
        t0 = time.perf_counter()
        async with self._propose_sem:
            self.stats.overlap.enter("propose")
            try:
                return await self._propose_inner(plan, seed)
            finally:
                self.stats.overlap.leave("propose")
                self.stats.propose_seconds += time.perf_counter() - t0

    async def _propose_inner(self, plan: SlotPlan, seed: int) -> Proposal:
        assert self.ctx is not None
        fb = [self._feedback(p) for p in plan.parents]
        if plan.operator == "init" or not fb:  # an island with no scored program yet
            made = await self.proposer.init(self.ctx, 1, seed)
            return made[0] if made else Proposal(None, "init", error="proposer returned nothing")
        if plan.operator == "shaping":
            trajs = await shaping.trajectories(self.executor, self.task, self.cfg, self.demos, self.data,
                                               plan.parents[0].best_source)
            return await self.proposer.shaping(self.ctx, fb[0], trajs, seed)
        if plan.operator == "crossover":
            return await self.proposer.crossover(self.ctx, fb[0], fb[1], seed)
        if plan.operator == "simplify":
            return await self.proposer.simplify(self.ctx, fb[0], seed)
        if plan.operator == "densify":
            return await self.proposer.densify(self.ctx, fb[0], seed)
        return await self.proposer.mutate(self.ctx, fb[0], seed)

    async def final_shaping(self) -> None:
        """The final stages: `fit.shaping`, the winner gets the potential learned from the demos
        (grace/search/shaping.py); then `ppo.select_payment`, PPO in the loop chooses how its goal
        is paid (grace/search/payment.py). best_reward.py carries both."""
        self.shaped, trajs = None, None
        if self.cfg.fit.shaping and self.best is not None and self.data is not None:
            trajs = await shaping.trajectories(self.executor, self.task, self.cfg, self.demos, self.data,
                                               self.best.best_source)
            self.shaped = await shaping.final(self.archive, self.executor, self.task, self.cfg, self.best, trajs,
                                              self.data)
            self.write_best()
        if self.best is not None:
            paid = await payment.final(self.archive, self.executor, self.task, self.cfg, self.best, self.shaped,
                                       self.data, trajs)
            self.shaped = paid or self.shaped
            self.write_best()  # with the stage's provenance line, whichever payment it kept

    def _already_scored(self, prop: Proposal, rnd: int, gen: int) -> bool:
        if prop.source is None:
            return False
        try:
            pid = RewardProgram(prop.source).program_id
        except ProgramError:
            return False
        return self.archive.scored_before(pid, self.neg_version, rnd, gen)

    def _persist(self, rnd: int, gen: int, plan: SlotPlan, prop: Proposal, by: str = "") -> int:
        """Store a proposal; `by`: who made it when not the proposer (the loop's own rewrites)."""
        parents, by = list(prop.parents) or [p.program_id for p in plan.parents], by or self.proposer.name
        source = prop.source or ""
        if prop.source is None:
            self.stats.invalid += 1
            return self.archive.add_proposal(
                program_id="", round=rnd, generation=gen, slot=plan.slot, island=plan.island,
                operator=prop.operator, parents=parents, proposer=by, source=source,
                status="invalid", error=prop.error or "no program", error_kind="no_program", meta=prop.meta)
        program = RewardProgram(source)
        try:
            program.validate(self.task.schema)
        except ProgramError as exc:
            self.stats.invalid += 1
            return self.archive.add_proposal(
                program_id="", round=rnd, generation=gen, slot=plan.slot, island=plan.island,
                operator=prop.operator, parents=parents, proposer=by, source=source,
                status="invalid", error=str(exc), error_kind="invalid", meta=prop.meta)
        return self.archive.add_proposal(
            program_id=program.program_id, round=rnd, generation=gen, slot=plan.slot, island=plan.island,
            operator=prop.operator, parents=parents, proposer=by, source=source,
            size=program.size, meta=prop.meta)

    async def _twin(self, row: ProgramRow, lower_slots: list[int]) -> ProgramRow | None:
        """The row this one duplicates, decided in (round, generation, slot) order, never in
        completion order: a program scored in an earlier generation on these negatives, else the
        lowest earlier slot of this generation with the same logic (waiting for its score).
        Kill + resume, and any evaluation order, give the same archive."""
        earlier = self.archive.scored_in_earlier_generation(row.program_id, self.neg_version,
                                                            row.round, row.generation)
        if earlier is not None:
            return earlier
        await asyncio.gather(*(self._event(row.round, row.generation, s, "persisted").wait()
                               for s in lower_slots))
        slots = self.archive.slots(row.round, row.generation)
        same = [slots[s] for s in sorted(lower_slots) if s in slots and slots[s].program_id == row.program_id]
        if not same:
            return None
        await self._event(row.round, row.generation, same[0].slot, "scored").wait()
        first = self.archive.program(same[0].id)  # it had no earlier twin either: ok or failed
        return first if first.status == "ok" else None

    def _event(self, rnd: int, gen: int, slot: int, what: str) -> asyncio.Event:
        return self._events.setdefault((rnd, gen, slot, what), asyncio.Event())

    async def _evaluate(self, row_id: int, seed: int, lower_slots: list[int]) -> None:
        row = self.archive.program(row_id)
        try:
            if row.status == "pending":
                await self._evaluate_pending(row, seed, lower_slots)
        finally:
            self._event(row.round, row.generation, row.slot, "scored").set()

    async def _evaluate_pending(self, row: ProgramRow, seed: int, lower_slots: list[int]) -> None:
        row_id = row.id
        program = RewardProgram(row.source)
        dup = await self._twin(row, lower_slots)
        if dup is not None:
            self.stats.duplicates += 1
            self.archive.set_result(row_id, status="duplicate", fitness=dup.fitness, heldout=dup.heldout,
                                    score=dup.score, negatives_version=self.neg_version,
                                    fitted_source=dup.fitted_source, metrics=dup.metrics)
            return
        self.stats.overlap.enter("eval")
        try:
            res = await self.fitness.score(program, seed)
            if not res.ok and res.error_kind == "crash":  # a worker killed from outside: once more
                self.stats.retried += 1
                res = await self.fitness.score(program, seed)
        finally:
            self.stats.overlap.leave("eval")
        self.stats.evaluated += 1
        self.stats.eval_seconds += res.seconds
        if not res.ok:
            self.stats.errors += 1
            self.archive.set_result(row_id, status="error", error_kind=res.error_kind, error=res.error,
                                    negatives_version=self.neg_version, eval_seconds=res.seconds)
            return
        assert res.fitness is not None
        try:  # the write-back is re-validated; a refusal is recorded, never a host crash
            fitted = program.with_params(res.params) if res.params else program
        except ProgramError as exc:
            self.archive.set_result(row_id, status="error", error_kind="invalid", error=str(exc),
                                    negatives_version=self.neg_version, eval_seconds=res.seconds)
            return
        self.archive.set_result(
            row_id, status="ok", fitness=res.fitness, heldout=res.heldout_fitness,
            score=penalised(res.fitness, program.size, self.cfg.search.parsimony), metrics=res.metrics,
            worst=[w.to_dict() for w in res.worst], fitted_source=fitted.source, debug_output=res.debug_output,
            negatives_version=self.neg_version, eval_seconds=res.seconds)

    async def _slot(self, rnd: int, gen: int, plan: SlotPlan, existing: ProgramRow | None,
                    init: Proposal | None, lower_slots: list[int]) -> None:
        seed = _seed(self.cfg, rnd, gen, plan.slot)
        if existing is None:
            prop = init if init is not None else await self._propose(plan, seed)
            for attempt in range(1, self.dedupe_retries + 1):  # cheap proposers: ask again
                if init is not None or not self._already_scored(prop, rnd, gen):
                    break
                self.stats.duplicates_avoided += 1
                prop = await self._propose(plan, seed + attempt * 7_919_001)
            row_id = self._persist(rnd, gen, plan, prop)
        else:
            row_id = existing.id
        self._event(rnd, gen, plan.slot, "persisted").set()
        await self._evaluate(row_id, seed, lower_slots)
        if self.progress is not None:
            self.progress.advance(self)

    # -- generations -----------------------------------------------------------------------
    async def _init_proposals(self, n: int) -> list[Proposal]:
        assert self.ctx is not None
        seeded = []
        for path in self.cfg.init:
            try:  # size-capped, UTF-8; a bad file is recorded invalid, the run goes on
                src = RewardProgram.from_file(path).source
            except ProgramError as exc:
                seeded.append(Proposal(None, "init-file", error=str(exc), meta={"file": str(path)}))
                continue
            seeded.append(Proposal(source=src, operator="init-file", meta={"file": str(path)}))
        rest = max(0, n - len(seeded))
        made = await self.proposer.init(self.ctx, rest, _seed(self.cfg, 0, 0, 0)) if rest else []
        return (seeded + list(made))[:n]

    async def run_generation(self, rnd: int, gen: int, pop: dict[int, list[ProgramRow]]) -> dict[int, list[ProgramRow]]:
        cfg = self.cfg.search
        t0 = time.time()
        existing = self.archive.slots(rnd, gen)
        n_slots = cfg.population * cfg.islands
        inits: dict[int, Proposal] = {}
        if gen == 0 and rnd == 0:
            plans = [SlotPlan(i, i % cfg.islands, "init", ()) for i in range(n_slots)]
            missing = [p.slot for p in plans if p.slot not in existing]
            if missing:
                props = await self._init_proposals(n_slots)
                inits = {i: props[i] for i in missing if i < len(props)}
                plans = [p for p in plans if p.slot in existing or p.slot in inits]
        elif gen == 0:  # a new round: re-score the population on the new negatives
            members = [m for isl in sorted(pop) for m in pop[isl]]
            plans = [SlotPlan(i, m.island, "rescore", (m,)) for i, m in enumerate(members)]
            inits = {p.slot: Proposal(source=p.parents[0].best_source, operator="rescore") for p in plans}
        else:
            rng = np.random.default_rng([self.cfg.seed, rnd, gen])
            plans = plan_generation(pop, cfg.population, cfg.temperature, cfg.crossover_rate,
                                    cfg.simplify_rate, rng)
            if gen == 1 and rnd > 0 and self._wants_shaping(rnd) and self.best is not None:
                plans = [SlotPlan(p.slot, p.island, "shaping", (self.best,)) if p.slot < cfg.islands else p
                         for p in plans]
            if gen == cfg.generations and (dense := self._to_densify(rnd, pop)):  # for PPO in the loop
                plans = [SlotPlan(p.slot, p.island, "densify", (dense[p.slot],)) if p.slot < len(dense) else p
                         for p in plans]
        slots = sorted(p.slot for p in plans)
        await asyncio.gather(*(self._slot(rnd, gen, p, existing.get(p.slot), inits.get(p.slot),
                                          [s for s in slots if s < p.slot]) for p in plans))
        return self._boundary(rnd, gen, pop, time.time() - t0)

    def _boundary(self, rnd: int, gen: int, pop: dict[int, list[ProgramRow]], seconds: float) -> dict[int, list[ProgramRow]]:
        cfg = self.cfg.search
        rows = self.archive.programs(round=rnd, generation=gen, status="ok")
        new_pop: dict[int, list[ProgramRow]] = {}
        for isl in range(cfg.islands):
            keep = [] if gen == 0 else pop.get(isl, [])
            new_pop[isl] = truncate(keep + [r for r in rows if r.island == isl], cfg.population)
        if gen > 0 and cfg.migrate_every > 0 and gen % cfg.migrate_every == 0:
            new_pop = migrate(new_pop, cfg.population)
        self.archive.set_population(rnd, gen, {i: [r.id for r in m] for i, m in new_pop.items()})
        best = truncate([r for m in new_pop.values() for r in m], 1)
        if best:
            self.best = best[0]
            self.write_best()
        all_rows = self.archive.slots(rnd, gen).values()
        self.archive.complete_generation(
            rnd, gen, best_program=self.best.id if self.best else None,
            best_fitness=self.best.fitness if self.best else None,
            best_heldout=self.best.heldout if self.best else None,
            evaluated=sum(r.status in ("ok", "error") for r in all_rows),
            errors=sum(r.status in ("error", "invalid") for r in all_rows), seconds=seconds)
        return new_pop

    def write_best(self) -> Path | None:
        """best_reward.py: the best program with its provenance (grace/search/best_file.py)."""
        if self.best is None:
            return None
        shaped = self.shaped if self.shaped and self.shaped.row_id == self.best.id else None
        line = (self.fitness.describe(shaped.fitness, shaped.heldout, shaped.metrics, self.best.negatives_version)
                + (" (with the potential)" if shaped.potential else "")) if shaped else self._fitness_line(self.best)
        return write_best_file(self.run_dir, self.archive, self.task, self.cfg, self.best, line, shaped)

    def _fitness_line(self, b: ProgramRow) -> str:
        return self.fitness.describe(b.fitness, b.heldout, b.metrics, b.negatives_version)

    def _to_densify(self, rnd: int, pop: dict[int, list[ProgramRow]]) -> list[ProgramRow]:
        """The top `ppo.select_dense` programs and the round's best by held-out fitness
        (`ppo_select.heldout_extras`), whose dense versions PPO in the loop weighs."""
        from grace.search import ppo_select

        if not ppo_select.enabled(self.cfg, self.task):
            return []
        top = truncate([r for m in pop.values() for r in m], self.cfg.ppo.select_dense)
        held = ppo_select.heldout_extras(self.archive.programs(round=rnd, status="ok"), self.cfg,
                                         top + truncate([r for m in pop.values() for r in m], self.cfg.ppo.select_top))
        return top + held

    def _wants_shaping(self, rnd: int) -> bool:
        row = next((r for r in self.archive.negatives() if r["version"] == rnd), None)
        return bool(row and row["info"].get("needs_shaping"))

    def _should_stop(self) -> str:
        cfg = self.cfg.search
        if cfg.target_fitness and self.best is not None and (self.best.fitness or 0) >= cfg.target_fitness:
            return f"target fitness {cfg.target_fitness} reached"
        if cfg.max_wall_time and time.time() - self.stats.started > cfg.max_wall_time:
            return f"wall-time budget of {cfg.max_wall_time:.0f}s reached"
        return ""

    async def run(self) -> RunResult:
        cfg = self.cfg.search
        self.load_data()
        await self.label_goals()
        done = self.archive.last_completed()
        start_round, start_gen = (0, 0) if done is None else (done[0], done[1] + 1)
        if done is not None and done[1] >= cfg.generations:
            start_round, start_gen = done[0] + 1, 0
        pop = self.archive.population(*done) if done else {}
        if done and pop:
            self.best = truncate([r for m in pop.values() for r in m], 1)[0]
        try:
            for rnd in range(start_round, cfg.rounds):
                if rnd > 0 and (reason := rounds.stop_reason(self.archive, rnd - 1, self.cfg)):
                    self.stats.stopped_because = reason
                    break
                if rnd > 0 and rnd > rundata.negatives_version(self.archive):
                    await self.active_negatives(rnd)
                    self.load_data()
                for gen in range(start_gen if rnd == start_round else 0, cfg.generations + 1):
                    if (reason := self._should_stop()):
                        self.stats.stopped_because = reason
                        await self.final_shaping()
                        return self._result()
                    pop = await self.run_generation(rnd, gen, pop)
                await self.ppo_select(rnd)
            if done is not None and start_round >= cfg.rounds:  # resumed a finished run: its choice stands
                await self.ppo_select(cfg.rounds - 1)
            await self.final_shaping()
        except BudgetExhausted as exc:
            self.stats.stopped_because = str(exc)
        return self._result()

    async def active_negatives(self, rnd: int) -> None:
        """GRACE's outer loop (search/active.py): the probe's exploits of the current best reward and
        the rollouts of PPO on it join the negatives (less what the proposer labels expert-like,
        `active.llm_labels`)."""
        from grace.search.active import round_negatives

        assert self.best is not None, "active negatives need a best program"
        assert self.ctx is not None
        await round_negatives(self.archive, self.run_dir, self.task, self.cfg, rnd, self.best, self.data, self.demos,
                              self.executor, getattr(self.progress, "note", None), (self.proposer, self.ctx))

    async def ppo_select(self, rnd: int) -> None:
        """PPO in the loop (search/ppo_select.py; discriminator fitted on round 0's data, so rounds
        compare); `best` and best_reward.py are the best round's winner (search/rounds.py)."""
        from grace.search import ppo_select, ppo_terms

        if not ppo_select.enabled(self.cfg, self.task) or self.data is None:
            return
        reference = self.data if self.neg_version == 0 else rundata.read_run_inputs(  # round 0's data
            self.archive, self.run_dir, self.task, self.demos, version=0).dataset(self.cfg.data, self.cfg.seed)
        shaper = (partial(shaping.with_demo_potential, self.executor, self.task, self.cfg, self.demos, reference)
                  if self.cfg.fit.shaping else None)
        record = await ppo_select.select(self.archive, self.task, self.cfg, rnd, reference, self.executor, shaper)
        if ppo_terms.wanted(self.cfg, record):
            record = await self.ppo_terms(rnd, reference, record)  # type: ignore[arg-type]
        if record is not None:
            self.best = self.archive.program((rounds.best_round(self.archive, rnd) or (0, record["winner"]))[1])
            self.write_best()

    async def ppo_terms(self, rnd: int, reference: Transitions, record: dict[str, Any]) -> dict[str, Any]:
        """Simpler by PPO (search/ppo_terms.py): the winner's terms alone, scored offline as proposals
        beyond the round's last generation (slots from population x islands on; a resumed run
        reuses them), then trained beside the winner; the updated selection record."""
        from grace.search import ppo_terms

        winner = self.archive.program(record["winner"])
        gen, first = self.cfg.search.generations, self.cfg.search.population * self.cfg.search.islands
        props, skipped = ppo_terms.proposals(winner, self.task.schema)
        rows = await asyncio.gather(*(self._score_extra(rnd, gen, SlotPlan(first + i, winner.island, "term", ()), p)
                                      for i, p in enumerate(props)))
        return await ppo_terms.simplify(self.archive, self.task, self.cfg, rnd, reference, record, winner,
                                        ppo_terms.pick_terms(list(rows), self.cfg.ppo.select_terms), skipped)

    async def _score_extra(self, rnd: int, gen: int, plan: SlotPlan, prop: Proposal) -> ProgramRow:
        existing = self.archive.slots(rnd, gen).get(plan.slot)
        row_id = existing.id if existing is not None else self._persist(rnd, gen, plan, prop, by="grace")
        await self._evaluate(row_id, _seed(self.cfg, rnd, gen, plan.slot), [])
        return self.archive.program(row_id)

    def _result(self) -> RunResult:
        path = self.run_dir / "best_reward.py"
        return RunResult(self.run_dir, self.best, path if path.exists() else None, self.stats)
