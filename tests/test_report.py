"""The HTML report: structure (always), and rendering in headless Chromium (where installed).

The run directory is built directly through the Archive API, so these tests do not depend on
the evolution loop.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from grace.config import EvolveConfig
from grace.data.trajectories import Episode, Trajectories
from grace.program import RewardProgram
from grace.report import build_context, render, write_report
from grace.search.archive import Archive

SECTIONS = ("summary", "fitness", "lineage", "best-code", "trajectories", "calls", "negatives")

SEED_SRC = '''"""CartPole: upright."""

PARAMS = {"angle_limit": 0.2}


def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    return upright, {"upright": upright}
'''

BEST_SRC = '''"""CartPole: upright and centred."""

PARAMS = {"angle_limit": 0.21, "centre_weight": 0.5}


def reward(s, a, s_next, p):
    upright = 1.0 - xp.abs(s_next.pole_angle) / p["angle_limit"]
    centred = 1.0 - xp.abs(s_next.cart_position) / 2.4
    return upright + p["centre_weight"] * centred, {"upright": upright, "centred": centred}
'''

BROKEN_SRC = '''"""Fails at run time (no such field)."""

PARAMS = {}


def reward(s, a, s_next, p):
    return s_next.pole_angle + s_next.no_such_field
'''


def _trajectories(rng: np.random.Generator, n_eps: int, length: int, scale: float) -> Trajectories:
    eps = [Episode(obs=(rng.normal(size=(length + 1, 4)) * scale).astype(np.float32),
                   actions=rng.integers(0, 2, size=length), rewards=np.ones(length, np.float32),
                   terminated=False, truncated=True) for _ in range(n_eps)]
    return Trajectories.from_episodes(eps, meta={"task": "cartpole"})


def make_run(tmp: Path, best_src: str = BEST_SRC) -> tuple[Path, RewardProgram]:
    """A small run directory: 2 generations x 2 islands, a call, one negative set, best file."""
    run = tmp / "run"
    run.mkdir()
    rng = np.random.default_rng(0)
    demos = _trajectories(rng, 4, 30, 0.02).save(tmp / "demos.npz")
    negs = _trajectories(rng, 4, 20, 0.3).save(run / "negatives" / "random.npz")
    EvolveConfig(task="cartpole", demos=str(demos), out=str(run)).override(
        search={"generations": 1, "population": 2, "islands": 2}).save(run / "config.toml")
    ar = Archive(run / "archive.sqlite")
    ar.add_negatives(0, str(negs.relative_to(run)), "random", 4, 80)
    seed, best = RewardProgram(SEED_SRC), RewardProgram(best_src)
    ids = {}
    for slot, (src, fit) in enumerate([(SEED_SRC, 0.2), (SEED_SRC.replace("0.2}", "0.3}"), 0.25)]):
        prog = RewardProgram(src)
        ids[slot] = ar.add_proposal(program_id=prog.program_id + ("" if slot == 0 else "b"), round=0,
                                    generation=0, slot=slot, island=slot % 2, operator="init", parents=[],
                                    proposer="offline", source=src, meta={"mutation": "random_terms"})
        ar.set_result(ids[slot], status="ok", fitness=fit, heldout=fit - 0.05, score=fit,
                      metrics={"accuracy": 0.6, "auc": 0.7}, negatives_version=0, size=prog.size)
    ar.set_population(0, 0, {0: [ids[0]], 1: [ids[1]]})
    ar.complete_generation(0, 0, best_program=ids[1], best_fitness=0.25, best_heldout=0.2, evaluated=2,
                           errors=0, seconds=0.5)
    best_id = ar.add_proposal(program_id=best.program_id, round=0, generation=1, slot=0, island=0,
                              operator="mutate", parents=[seed.program_id], proposer="offline",
                              source=best_src, meta={"mutation": "add_term"})
    ar.set_result(best_id, status="ok", fitness=0.6, heldout=0.55, score=0.6, fitted_source=best_src,
                  metrics={"accuracy": 0.9, "auc": 0.95}, negatives_version=0, size=best.size)
    bad = ar.add_proposal(program_id="x", round=0, generation=1, slot=1, island=1, operator="mutate",
                          parents=[seed.program_id], proposer="offline", source="def nope(",
                          status="invalid", error="syntax", meta={"mutation": "swap_field"})
    assert bad
    ar.set_population(0, 1, {0: [best_id, ids[0]], 1: [ids[1]]})
    ar.complete_generation(0, 1, best_program=best_id, best_fitness=0.6, best_heldout=0.55, evaluated=1,
                           errors=1, seconds=0.7)
    ar.record_call({"key": "k1", "operator": "mutate", "model": "m", "prompt": "p", "reply": "r",
                    "prompt_tokens": 100, "completion_tokens": 50, "latency": 1.5})
    ar.set_meta("status", "finished")
    ar.close()
    (run / "best_reward.py").write_text(best_src)
    return run, best


class _Page(HTMLParser):
    """Collects ids, img sources and every URL-valued attribute."""

    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()
        self.imgs: list[str] = []
        self.urls: list[str] = []
        self.scripts = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if a.get("id"):
            self.ids.add(a["id"] or "")
        if tag == "img":
            self.imgs.append(a.get("src") or "")
        if tag == "script":
            self.scripts += 1
        self.urls += [v or "" for k, v in attrs if k in ("src", "href", "srcset", "action", "data")]


def _parse(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, RewardProgram, str]:
    tmp = tmp_path_factory.mktemp("report")
    run, best = make_run(tmp)
    out = write_report(run, tmp / "out" / "report.html")
    return out, best, out.read_text()


def test_report_structure(report: tuple[Path, RewardProgram, str]) -> None:
    out, best, html = report
    page = _parse(html)
    assert set(SECTIONS) <= page.ids
    assert len(page.imgs) >= 3  # fitness, trajectories, components
    assert all(src.startswith("data:image/png;base64,") for src in page.imgs)
    assert not [u for u in page.urls if re.match(r"\s*(https?:)?//", u)], page.urls
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html)
    assert page.scripts == 0
    assert best.program_id in html
    assert "add_term" in html and "random_terms" in html  # proposals by mutation kind
    assert 'class="section-error"' not in html  # every section built
    assert out.stat().st_size < 1_500_000


def test_report_sections_content(tmp_path: Path) -> None:
    run, best = make_run(tmp_path)
    ctx = build_context(run)
    assert ctx["header"]["counts"]["ok"] == 3 and ctx["header"]["counts"]["invalid"] == 1
    steps = ctx["lineage"]["steps"]
    assert [s["program_id"] for s in steps][-1] == best.program_id and len(steps) == 2
    assert steps[-1]["diff"]  # the mutation changed the code
    assert ctx["trajectories"]["components"] == ["upright", "centred"]
    expert, negatives = ctx["trajectories"]["table"]
    assert float(expert["mean"]) > float(negatives["mean"])  # the demos are more upright
    assert ctx["calls"]["totals"]["prompt_tokens"] == 100


def test_report_shows_sandbox_error_and_escapes(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path, BROKEN_SRC)
    ar = Archive(run / "archive.sqlite")
    ar.set_meta("status", "<script>alert(1)</script>")  # untrusted text is escaped
    ar.close()
    html = write_report(run, tmp_path / "r.html").read_text()
    page = _parse(html)
    assert set(SECTIONS) <= page.ids
    section = html.split('id="trajectories"')[1].split("</section>")[0]
    assert 'class="section-error"' in section and "no_such_field" in section
    assert page.scripts == 0 and "&lt;script&gt;alert(1)" in html


def test_report_missing_demos_is_a_section_error(tmp_path: Path) -> None:
    run, _ = make_run(tmp_path)
    (tmp_path / "demos.npz").unlink()
    html = write_report(run, tmp_path / "r.html").read_text()
    section = html.split('id="trajectories"')[1].split("</section>")[0]
    assert 'class="section-error"' in section and "demos.npz" in section


def test_report_rounds(tmp_path: Path) -> None:
    run, best = make_run(tmp_path)
    ar = Archive(run / "archive.sqlite")
    neg = _trajectories(np.random.default_rng(1), 2, 10, 0.5).save(run / "negatives" / "ppo-round1.npz")
    ar.add_negatives(1, str(neg.relative_to(run)), "ppo-r1", 2, 20)
    row = ar.top(1)[0]
    ar.set_population(1, 0, {0: [row.id], 1: [row.id]})
    ar.complete_generation(1, 0, best_program=row.id, best_fitness=0.5, best_heldout=0.45, evaluated=2,
                           errors=0, seconds=0.3)
    ar.close()
    ctx = build_context(run)
    assert [r["round"] for r in ctx["evolution"]["rounds"]] == [0, 1]
    assert [r["set"] for r in ctx["trajectories"]["table"]] == ["expert", "random", "ppo-r1"]
    html = render(ctx)
    assert "Per round" in html and "ppo-r1" in html and 'class="section-error"' not in html


def test_report_not_a_run(tmp_path: Path) -> None:
    from grace.search.archive import ArchiveError

    with pytest.raises(ArchiveError):
        write_report(tmp_path, tmp_path / "r.html")


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


def test_report_renders_in_headless_chromium(report: tuple[Path, RewardProgram, str],
                                             tmp_path: Path) -> None:
    exe = _chromium()
    if exe is None:
        pytest.skip("chromium not installed: apt-get install chromium")
    out, best, _ = report
    cmd = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
           "--dump-dom", out.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    page = _parse(proc.stdout)
    assert set(SECTIONS) <= page.ids, proc.stderr[-2000:]
    assert best.program_id in proc.stdout
    errors = [line for line in proc.stderr.splitlines()
              if "CONSOLE" in line or "Uncaught" in line or "ERR_FILE_NOT_FOUND" in line
              or "Failed to load resource" in line]
    assert not errors, errors
