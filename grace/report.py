"""`grace report RUN`: one self-contained HTML page describing a run.

Everything the page needs is inside it: plots are PNGs (matplotlib, Agg) embedded as base64
data URIs, code is highlighted by pygments with inline styles, the CSS is inline, there is no
JavaScript and no external reference. Each section is built on its own; a section that fails
(a missing demo file, a program the sandbox rejects) shows its error instead of its content,
so the report never crashes on a run that exists.

The best program is untrusted code: it is only ever run inside the sandbox worker pool.
"""

from __future__ import annotations

import base64
import difflib
import io
import time
import tomllib
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from grace.search.archive import Archive, ArchiveError, ProgramRow

TEMPLATE = "report_template.html.j2"
DPI = 72
EPISODES_PLOTTED = 3
MAX_COMPONENTS = 9
EPISODES_PER_SET = 24
"""Episodes per dataset (expert demos, each negative set) evaluated for the distributions."""
COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _png(fig: Any) -> str:
    """Render a matplotlib figure to a data URI and close it."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _guard(build: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run one section builder; an exception becomes the section's error message."""
    try:
        return build(*args)
    except Exception as exc:  # noqa: BLE001 - a report section must never sink the page
        return {"error": f"{type(exc).__name__}: {exc}"}


def _highlight(code: str, lexer: str = "python") -> str:
    from markupsafe import Markup
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import DiffLexer, PythonLexer

    lex = PythonLexer() if lexer == "python" else DiffLexer()
    return Markup(highlight(code, lex, HtmlFormatter(noclasses=True, nowrap=False)))


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return "nan" if v != v else f"{v:.{digits}f}"
    return str(v)


# ------------------------------------------------------------------------------------ header
def _header(run_dir: Path, archive: Archive, cfg: dict[str, Any]) -> dict[str, Any]:
    counts = archive.status_counts()
    timing = archive.timing()
    first, last, gen_seconds = timing["first"], timing["last"], timing["generation_seconds"]
    wall = (last - first) if first and last else gen_seconds
    from grace.config import EvolveConfig

    conf = EvolveConfig.from_dict(cfg)  # nested, or the flat layout of first-wave runs
    keys = ("task", "demos", "proposer.kind", "fitness.kind", "search.generations", "search.population",
            "search.islands", "search.rounds", "search.migrate_every", "seed", "data.holdout",
            "search.parsimony", "fit.params", "sandbox.workers")
    summary = [(k, conf.get(k)) for k in keys]
    if conf.proposer.kind in ("llm", "vllm"):
        summary.append(("model", conf.llm.model or conf.llm.local_model or "?"))
    return {
        "run": str(run_dir), "task": cfg.get("task", "?"), "demos": cfg.get("demos", "?"),
        "status": archive.get_meta("status") or "unfinished (no status recorded)",
        "counts": {s: counts.get(s, 0) for s in ("ok", "error", "invalid", "duplicate", "pending")},
        "total": sum(counts.values()),
        "wall": f"{wall:.1f} s" if wall else "–",
        "summary": summary,
        "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(first)) if first else "–",
    }


# ---------------------------------------------------------------------------------- evolution
def _evolution(archive: Archive) -> dict[str, Any]:
    gens = archive.completed_generations()
    if not gens:
        return {"error": "no completed generation in this run"}
    index = {(g["round"], g["generation"]): i for i, g in enumerate(gens)}
    rows = archive.population_members()
    Member = tuple[str, float, float | None, float]
    pops: dict[int, dict[int, list[Member]]] = defaultdict(lambda: defaultdict(list))
    for rnd, gen, isl, pid, fit, held, score in rows:
        if (rnd, gen) in index and fit is not None:
            pops[isl][index[(rnd, gen)]].append((pid, fit, held, fit if score is None else score))
    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
    x_all = np.arange(len(gens))
    best = [g["best_fitness"] if g["best_fitness"] is not None else np.nan for g in gens]
    held = [g["best_heldout"] if g["best_heldout"] is not None else np.nan for g in gens]
    axes[0].plot(x_all, best, color="black", lw=2, label="overall (train)")
    axes[0].plot(x_all, held, color="black", lw=2, ls="--", label="overall (held-out)")
    for k, isl in enumerate(sorted(pops)):
        c = COLOURS[k % len(COLOURS)]
        xs = sorted(pops[isl])
        tops = [max(pops[isl][x], key=lambda m: m[3]) for x in xs]  # the selection's best (score)
        axes[0].plot(xs, [t[1] for t in tops], color=c, lw=1, marker="o", ms=3, label=f"island {isl}")
        axes[0].plot(xs, [np.nan if t[2] is None else t[2] for t in tops], color=c, lw=1, ls="--")
        axes[1].plot(xs, [len({m[0] for m in pops[isl][x]}) for x in xs], color=c, marker="o", ms=3,
                     label=f"island {isl}")
        axes[2].plot(xs, [float(np.std([m[1] for m in pops[isl][x]])) for x in xs], color=c, marker="o",
                     ms=3, label=f"island {isl}")
    titles = ("fitness of the best by score (solid train, dashed held-out)", "diversity: distinct programs in population",
              "fitness spread in population (std)")
    for ax, title in zip(axes, titles, strict=True):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("generation" + (" (all rounds)" if gens[-1]["round"] > 0 else ""))
        ax.grid(alpha=0.3)
        for i, g in enumerate(gens):
            if i and g["generation"] == 0:
                ax.axvline(i - 0.5, color="grey", ls=":", lw=1)
    axes[0].legend(fontsize=7)
    axes[1].legend(fontsize=7)
    table = [{"round": g["round"], "generation": g["generation"], "best": g["best_program"],
              "fitness": _fmt(g["best_fitness"]), "heldout": _fmt(g["best_heldout"]),
              "evaluated": g["evaluated"], "errors": g["errors"], "seconds": _fmt(g["seconds"], 1)}
             for g in gens]
    rounds: dict[int, dict[str, Any]] = {}
    for g in gens:
        r = rounds.setdefault(g["round"], {"round": g["round"], "generations": 0})
        r["generations"] += 1
        r.update(fitness=_fmt(g["best_fitness"]), heldout=_fmt(g["best_heldout"]), best=g["best_program"])
    return {"plot": _png(fig), "table": table, "rounds": list(rounds.values())}


# ------------------------------------------------------------------------------------ lineage
def best_program(archive: Archive) -> ProgramRow | None:
    """The run's best: the last completed generation's best (what best_reward.py holds)."""
    gens = archive.completed_generations()
    for g in reversed(gens):
        if g["best_program"] is not None:
            try:
                return archive.program(int(g["best_program"]))
            except ArchiveError:
                break
    top = archive.top(1)
    return top[0] if top else None


def _diff(old: str, new: str, max_lines: int = 60) -> str:
    lines = list(difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="", n=1))[2:]
    if len(lines) > max_lines:
        lines = lines[:max_lines] + [f"... ({len(lines) - max_lines} more lines)"]
    return "\n".join(lines)


def _lineage(archive: Archive, best: ProgramRow) -> dict[str, Any]:
    chain = list(reversed(archive.lineage(best.id)))
    steps = []
    for i, p in enumerate(chain):
        diff = _diff(chain[i - 1].best_source, p.best_source) if i else ""
        kind = p.meta.get("mutation") if isinstance(p.meta, dict) else None
        steps.append({
            "round": p.round, "generation": p.generation, "island": p.island, "slot": p.slot,
            "operator": p.operator + (f" ({kind})" if kind else ""), "proposer": p.proposer,
            "program_id": p.program_id, "row": p.id, "parents": ", ".join(p.parents) or "–",
            "fitness": _fmt(p.fitness), "heldout": _fmt(p.heldout), "size": p.size,
            "diff": _highlight(diff, "diff") if diff.strip() else "",
        })
    return {"steps": steps}


def _best_code(run_dir: Path, best: ProgramRow) -> dict[str, Any]:
    path = run_dir / "best_reward.py"
    code = path.read_text() if path.exists() else best.best_source
    m = best.metrics or {}
    metrics = [(k, _fmt(v)) for k, v in m.items() if isinstance(v, (int, float))]
    return {"html": _highlight(code), "file": str(path) if path.exists() else "(from the archive)",
            "metrics": metrics, "program_id": best.program_id, "row": best.id,
            "fitness": _fmt(best.fitness), "heldout": _fmt(best.heldout)}


# ------------------------------------------------------------------------------- trajectories
def _resolve(spec: str, run_dir: Path) -> str:
    """A path from the config, relative to the cwd of the run or to the run directory."""
    if not spec or spec.startswith("minari:") or Path(spec).exists():
        return spec
    for base in (run_dir, *run_dir.resolve().parents):
        if (base / spec).exists():
            return str(base / spec)
    return spec


def _task(run_dir: Path, cfg: dict[str, Any]) -> Any:
    """The run's task: a built-in name as is (a run directory named after its task must not be
    taken for a task file), else a TOML path resolved like the demos."""
    from grace.tasks import get_task, task_names

    name = str(cfg.get("task", ""))
    return get_task(name if name in task_names() else _resolve(name, run_dir))


def _trajectories(run_dir: Path, archive: Archive, cfg: dict[str, Any], best: ProgramRow) -> dict[str, Any]:
    from grace.data.trajectories import load_demos
    from grace.sandbox.pool import SandboxPool
    from grace.search import negatives as rundata

    task = _task(run_dir, cfg)
    inputs = rundata.read_run_inputs(archive, run_dir, task,
                                     load_demos(_resolve(str(cfg.get("demos", "")), run_dir), task))
    sets = [("expert", inputs.demos), *inputs.negatives]
    discrete = task.action.kind == "discrete"
    parts, spans = [], []  # spans: (set index, episode, start, length)
    offset = 0
    for k, (_, traj) in enumerate(sets):
        sub = traj.select(range(min(EPISODES_PER_SET, traj.n_episodes)))
        t = sub.transitions()
        parts.append(t)
        for ep, n in enumerate(sub.lengths):
            spans.append((k, ep, offset, int(n)))
            offset += int(n)
    batch = {key: np.concatenate([p[key] for p in parts]) for key in ("s", "s_next")}
    batch["a"] = task.action.batch(np.concatenate([p["a"] for p in parts]))
    batch = {k: np.ascontiguousarray(v, dtype=np.int64 if k == "a" and discrete else np.float32)
             for k, v in batch.items()}
    with SandboxPool(schema=task.schema, n_workers=1, profile="numpy") as pool:
        pool.put("report", batch)
        out = pool.evaluate(best.best_source, "report")
    if not out.ok:
        return {"error": f"the sandbox could not evaluate the best program: {out.error}"}
    total, comps = out.value
    total = np.asarray(total, dtype=float)
    comps = {k: np.asarray(v, dtype=float) for k, v in (comps or {}).items()}
    names = list(comps)[:MAX_COMPONENTS]
    labels = [name for name, _ in sets]
    plotted = [sp for sp in spans if sp[0] == 0][:EPISODES_PLOTTED]
    neg_groups = [[sp for sp in spans if sp[0] == k] for k in range(1, len(sets))]
    plotted += [g[i] for i in range(EPISODES_PLOTTED) for g in neg_groups if i < len(g)][:EPISODES_PLOTTED]

    def draw(ax: Any, values: np.ndarray, title: str) -> None:
        for n, (k, ep, start, length) in enumerate(plotted):
            expert = k == 0
            ax.plot(np.arange(length), values[start:start + length], lw=1.2, ls="-" if expert else "--",
                    color=("#1f77b4" if expert else "#d62728"), alpha=1.0 - 0.2 * (n % EPISODES_PLOTTED),
                    label=f"{labels[k]} ep {ep}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("time step")
        ax.grid(alpha=0.3)

    plt = _plt()
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(13, 3.6))
    draw(ax0, total, "reward along episodes (solid expert, dashed negatives)")
    ax0.legend(fontsize=7, ncol=2)
    is_expert = np.zeros(len(total), dtype=bool)
    for k, _, start, length in spans:
        is_expert[start:start + length] = k == 0
    finite = np.isfinite(total)
    lo, hi = np.percentile(total[finite], [1, 99]) if finite.any() else (0.0, 1.0)
    bins = np.linspace(lo, hi + 1e-9 + 1e-6 * abs(hi), 40)
    ax1.hist(total[is_expert & finite], bins=bins, alpha=0.6, density=True, color="#1f77b4", label="expert")
    ax1.hist(total[~is_expert & finite], bins=bins, alpha=0.6, density=True, color="#d62728",
             label="negatives")
    ax1.set_title("reward per transition: expert vs negatives (1st-99th pct)", fontsize=10)
    ax1.legend(fontsize=7)
    main = _png(fig)
    comp_plot = None
    if names:
        cols = min(3, len(names))
        rows = (len(names) + cols - 1) // cols
        fig, axes = plt.subplots(rows, cols, figsize=(4.4 * cols, 2.6 * rows), squeeze=False)
        for ax, name in zip(axes.flat, names, strict=False):
            draw(ax, comps[name], name)
        for ax in list(axes.flat)[len(names):]:
            ax.axis("off")
        fig.tight_layout()
        comp_plot = _png(fig)
    table = []
    for k, (label, traj) in enumerate(sets):
        idx = np.concatenate([np.arange(s, s + n) for kk, _, s, n in spans if kk == k] or [np.zeros(0, int)])
        row = {"set": label, "episodes": f"{min(EPISODES_PER_SET, traj.n_episodes)} of {traj.n_episodes}",
               "mean": _fmt(float(np.mean(total[idx])) if len(idx) else None),
               "return": _fmt(float(np.sum(total[idx])) / max(1, sum(1 for sp in spans if sp[0] == k)), 2)}
        row["components"] = {n: _fmt(float(np.mean(comps[n][idx])) if len(idx) else None) for n in names}
        table.append(row)
    return {"plot": main, "components_plot": comp_plot, "components": names, "table": table,
            "ms": f"{1000 * out.seconds:.0f}", "transitions": len(total)}


# ----------------------------------------------------------------------------- worst examples
def _worst(run_dir: Path, cfg: dict[str, Any], best: ProgramRow) -> dict[str, Any]:
    """The best program's worst-scored examples (as the proposer saw them); grid states drawn."""
    from grace.report_grid import worst_section

    return worst_section(_task(run_dir, cfg).schema, list(best.worst))


# -------------------------------------------------------------------------- calls, negatives
def _calls(archive: Archive) -> dict[str, Any]:
    stats = archive.call_stats()
    for s in stats:
        s["latency"] = _fmt(s["latency"], 2)
    totals = {k: sum(int(s[k] or 0) for s in stats)
              for k in ("calls", "errors", "cached", "prompt_tokens", "completion_tokens")}
    groups: dict[tuple[str, str], dict[str, Any]] = {}
    for op, meta, status, fit in archive.proposal_outcomes():
        kind = meta.get("mutation", "–")
        g = groups.setdefault((op, str(kind)), {"operator": op, "kind": str(kind), "proposals": 0, "ok": 0,
                                                 "error": 0, "invalid": 0, "duplicate": 0, "best": None})
        g["proposals"] += 1
        if status in g:
            g[status] += 1
        if status == "ok" and fit is not None:
            g["best"] = fit if g["best"] is None else max(g["best"], fit)
    ops = sorted(groups.values(), key=lambda g: (g["operator"], -g["proposals"]))
    for g in ops:
        g["best"] = _fmt(g["best"])
    return {"stats": stats, "totals": totals, "operators": ops}


def _negatives(archive: Archive) -> dict[str, Any]:
    """Every negative set, the probe's (`extra_sets`) after its round's PPO set with what it found
    (and what the LLM labelled, `active.llm_labels`)."""
    from grace.search import policy_labels, probe

    out = []
    for r in archive.negatives():
        info = r["info"]
        notes = [probe.summary(info["probe"]) if info.get("probe") else "",
                 policy_labels.summary(info["policy_labels"]) if info.get("policy_labels") else ""]
        out.append({"version": r["version"], "source": r["source"], "episodes": r["episodes"],
                    "env_steps": r["env_steps"], "path": r["path"], "note": "; ".join(n for n in notes if n)})
        out += [{"version": r["version"], "source": e["source"], "episodes": e.get("episodes", ""),
                 "env_steps": (info.get("probe") or {}).get("env_steps", ""), "path": e["path"], "note": ""}
                for e in info.get("extra_sets", [])]
    return {"sets": out}


# ---------------------------------------------------------------------------------- the page
def build_context(run_dir: Path) -> dict[str, Any]:
    """Everything the template shows, one dict per section (a failed section has "error")."""
    run_dir = Path(run_dir)
    if not (run_dir / "archive.sqlite").exists():
        raise ArchiveError(f"{run_dir} is not a grace run directory (no archive.sqlite)")
    archive = Archive(run_dir / "archive.sqlite", create=False)
    try:
        cfg_path = run_dir / "config.toml"
        cfg_text = cfg_path.read_text() if cfg_path.exists() else ""
        try:
            cfg = tomllib.loads(cfg_text) if cfg_text else dict(archive.get_meta("config") or {})
        except tomllib.TOMLDecodeError:
            cfg = dict(archive.get_meta("config") or {})
        best = best_program(archive)
        no_best = {"error": "no program was scored successfully in this run"}
        return {
            "header": _guard(_header, run_dir, archive, cfg),
            "config_text": cfg_text,
            "evolution": _guard(_evolution, archive),
            "lineage": _guard(_lineage, archive, best) if best else no_best,
            "best": _guard(_best_code, run_dir, best) if best else no_best,
            "trajectories": _guard(_trajectories, run_dir, archive, cfg, best) if best else no_best,
            "worst": _guard(_worst, run_dir, cfg, best) if best else no_best,
            "calls": _guard(_calls, archive),
            "negatives": _guard(_negatives, archive),
            "generated": time.strftime("%Y-%m-%d %H:%M:%S"),
        }
    finally:
        archive.close()


def render(context: dict[str, Any]) -> str:
    """The HTML page for a context from `build_context` (Jinja2, autoescaped)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent), autoescape=True,
                             trim_blocks=True, lstrip_blocks=True)
    return env.get_template(TEMPLATE).render(**context)


def write_report(run_dir: Path, out: Path) -> Path:
    """Write the self-contained HTML report of `run_dir` to `out`; returns `out`."""
    out = Path(out)
    html = render(build_context(Path(run_dir)))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    tmp.replace(out)
    return out
