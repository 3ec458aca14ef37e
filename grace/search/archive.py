"""The run archive: one SQLite file (WAL) holding everything a run produced.

Every proposal is written the moment it exists (status "pending"), then updated with its
evaluation; every external proposer call is written before its reply is used. A run killed at
any point resumes from this file alone.

One writer at a time: a writing `Archive` holds an exclusive lock (`archive.sqlite.lock`, which
names its holder) for as long as it is open, so a second `grace evolve` on a live run is refused
with one line. Readers (`create=False`: show, report, eval, reply caches) open the file
read-only and never take the lock; a run directory on a read-only medium is still readable.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


class ArchiveError(ValueError):
    """The run directory's archive is missing, corrupt or from an incompatible version, or it is
    in use by another writer. One-line message."""


def storage_error(exc: BaseException) -> str | None:
    """A one-line message when `exc` means the run directory cannot be written (disk full,
    read-only medium, no permission, I/O error); None for anything else."""
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc)
        if any(k in text for k in ("disk is full", "readonly database", "disk I/O error", "unable to open")):
            return f"cannot write the run archive: {text}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EIO):
        return f"cannot write {exc.filename or 'the run directory'}: {os.strerror(exc.errno)}"
    return None


class RunLock:
    """An exclusive, non-blocking lock on a run's archive (released when closed or when the
    process dies: the kernel drops flock locks of dead processes)."""

    def __init__(self, archive_path: Path) -> None:
        self.path = Path(str(archive_path) + ".lock")
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 200, 0).decode(errors="replace").strip() or "another process"
            os.close(self.fd)
            raise ArchiveError(f"{archive_path.parent} is in use by {holder}: wait for it to finish or stop "
                               "it (a stopped run resumes with --resume)") from None
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, f"grace pid {os.getpid()} on {socket.gethostname()}".encode(), 0)

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
CREATE TABLE IF NOT EXISTS programs (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  program_id TEXT, round INTEGER, generation INTEGER, slot INTEGER, island INTEGER,
  operator TEXT, parents TEXT, proposer TEXT,
  source TEXT, fitted_source TEXT,
  status TEXT,            -- pending | ok | error | invalid | duplicate
  fitness REAL, heldout REAL, score REAL, size INTEGER,
  metrics TEXT, worst TEXT, error_kind TEXT, error TEXT, debug_output TEXT,
  negatives_version INTEGER, meta TEXT, created REAL, eval_seconds REAL,
  UNIQUE(round, generation, slot)
);
CREATE INDEX IF NOT EXISTS programs_pid ON programs(program_id, negatives_version);
CREATE TABLE IF NOT EXISTS calls (
  id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT, operator TEXT, model TEXT,
  prompt TEXT, reply TEXT, prompt_tokens INTEGER, completion_tokens INTEGER,
  latency REAL, error TEXT, cached INTEGER DEFAULT 0, created REAL
);
CREATE INDEX IF NOT EXISTS calls_key ON calls(key);
CREATE TABLE IF NOT EXISTS population (
  round INTEGER, generation INTEGER, island INTEGER, program INTEGER,
  PRIMARY KEY (round, generation, island, program)
);
CREATE TABLE IF NOT EXISTS generations (
  round INTEGER, generation INTEGER, completed REAL, best_program INTEGER,
  best_fitness REAL, best_heldout REAL, evaluated INTEGER, errors INTEGER, seconds REAL,
  PRIMARY KEY (round, generation)
);
CREATE TABLE IF NOT EXISTS negatives (
  version INTEGER PRIMARY KEY, path TEXT, source TEXT, episodes INTEGER, env_steps INTEGER,
  created REAL, info TEXT
);
"""

_JSON_COLS = ("parents", "metrics", "worst", "meta")


@dataclass
class ProgramRow:
    id: int
    program_id: str
    round: int
    generation: int
    slot: int
    island: int
    operator: str
    parents: list[str]
    proposer: str
    source: str
    fitted_source: str | None
    status: str
    fitness: float | None
    heldout: float | None
    score: float | None
    size: int | None
    metrics: dict[str, Any]
    worst: list[dict[str, Any]]
    error_kind: str | None
    error: str | None
    debug_output: str | None
    negatives_version: int | None
    meta: dict[str, Any]
    created: float
    eval_seconds: float | None

    @property
    def best_source(self) -> str:
        return self.fitted_source or self.source


class Archive:
    def __init__(self, path: str | Path, create: bool = True) -> None:
        """`create=True`: open for writing (creating it if needed) and hold the run's lock;
        `create=False`: open an existing archive read-only."""
        self.path = Path(path)
        self.readonly = not create
        self.lock: RunLock | None = None
        if self.readonly:
            if not self.path.exists():
                raise ArchiveError(f"no archive at {self.path}")
            self.db = self._open_readonly()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.lock = RunLock(self.path)
            self.db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.row_factory = sqlite3.Row
        version = self._schema_version()
        if version is None and self.readonly:
            raise ArchiveError(f"{self.path} is not a grace archive (no schema version)")
        if version is None:
            self.db.executescript(_SCHEMA)  # executescript manages its own transaction
            self.set_meta("schema_version", SCHEMA_VERSION)
        elif version != SCHEMA_VERSION:
            raise ArchiveError(
                f"{self.path} was written by archive schema v{version}; this grace reads v{SCHEMA_VERSION}"
            )

    def _open_readonly(self) -> sqlite3.Connection:
        """Read-only; on a read-only medium (where SQLite cannot create the WAL index) the file
        is opened as immutable, which is exact as long as nobody writes it meanwhile."""
        uri = self.path.resolve().as_uri()
        db = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30.0, isolation_level=None)
        try:
            db.execute("SELECT 1 FROM sqlite_master LIMIT 1").fetchall()
            return db
        except sqlite3.OperationalError:
            db.close()
        return sqlite3.connect(f"{uri}?immutable=1", uri=True, isolation_level=None)

    def _schema_version(self) -> int | None:
        try:
            row = self.db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
        except sqlite3.DatabaseError as exc:
            if "no such table" in str(exc):
                return None
            raise ArchiveError(f"{self.path} is not a grace archive ({exc})") from None
        return int(json.loads(row[0])) if row else None

    @contextmanager
    def tx(self) -> Iterator[None]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()
        if self.lock is not None:
            self.lock.release()

    # -- meta ------------------------------------------------------------------------------
    def set_meta(self, key: str, value: Any) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, json.dumps(value)))

    def get_meta(self, key: str, default: Any = None) -> Any:
        row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    # -- programs --------------------------------------------------------------------------
    def add_proposal(self, *, program_id: str, round: int, generation: int, slot: int, island: int,
                     operator: str, parents: list[str], proposer: str, source: str, status: str = "pending",
                     error: str | None = None, error_kind: str | None = None, size: int | None = None,
                     meta: dict[str, Any] | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO programs (program_id, round, generation, slot, island, operator, parents, proposer,"
            " source, status, error, error_kind, size, meta, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (program_id, round, generation, slot, island, operator, json.dumps(parents), proposer, source,
             status, error, error_kind, size, json.dumps(meta or {}), time.time()),
        )
        return int(cur.lastrowid or 0)

    def set_result(self, row_id: int, **fields: Any) -> None:
        for col in _JSON_COLS:
            if col in fields:
                fields[col] = json.dumps(fields[col])
        cols = ", ".join(f"{k}=?" for k in fields)
        self.db.execute(f"UPDATE programs SET {cols} WHERE id=?", (*fields.values(), row_id))

    def _row(self, r: sqlite3.Row) -> ProgramRow:
        d = dict(r)
        for col in _JSON_COLS:
            d[col] = json.loads(d[col]) if d[col] else ([] if col in ("parents", "worst") else {})
        return ProgramRow(**d)

    def program(self, row_id: int) -> ProgramRow:
        r = self.db.execute("SELECT * FROM programs WHERE id=?", (row_id,)).fetchone()
        if r is None:
            raise ArchiveError(f"no program #{row_id} in {self.path}")
        return self._row(r)

    def programs(self, *, round: int | None = None, generation: int | None = None,
                 status: str | None = None, operator: str | None = None,
                 best_first: bool = False) -> list[ProgramRow]:
        """Programs matching every given filter, in proposal order (or best score first)."""
        filters = {"round": round, "generation": generation, "status": status, "operator": operator}
        given = {k: v for k, v in filters.items() if v is not None}
        where = " AND ".join(f"{k}=?" for k in given) or "1"
        # (round, generation, slot), not id: a resumed run stores rows in another order (select.order_key)
        order = "score DESC, round, generation, slot" if best_first else "round, generation, slot"
        rows = self.db.execute(f"SELECT * FROM programs WHERE {where} ORDER BY {order}", tuple(given.values()))
        return [self._row(r) for r in rows]

    def slots(self, round: int, generation: int) -> dict[int, ProgramRow]:
        return {p.slot: p for p in self.programs(round=round, generation=generation)}

    def scored_in_earlier_generation(self, program_id: str, negatives_version: int, round: int,
                                     generation: int) -> ProgramRow | None:
        """The first program with this logic scored ok on these negatives before (round, generation)."""
        r = self.db.execute(
            "SELECT * FROM programs WHERE program_id=? AND negatives_version=? AND status='ok'"
            " AND (round < ? OR (round = ? AND generation < ?)) ORDER BY round, generation, slot LIMIT 1",
            (program_id, negatives_version, round, round, generation)).fetchone()
        return self._row(r) if r else None

    def scored_before(self, program_id: str, negatives_version: int, round: int, generation: int) -> bool:
        """Was this logic scored on these negatives in an EARLIER generation? (Deterministic:
        earlier generations are complete before a generation starts, whatever the async order.)"""
        r = self.db.execute(
            "SELECT 1 FROM programs WHERE program_id=? AND negatives_version=? AND status IN ('ok', 'duplicate')"
            " AND (round < ? OR (round = ? AND generation < ?)) LIMIT 1",
            (program_id, negatives_version, round, round, generation)).fetchone()
        return r is not None

    def by_program_id(self, program_id: str) -> ProgramRow | None:
        r = self.db.execute(
            "SELECT * FROM programs WHERE program_id=? AND status='ok' ORDER BY score DESC, round, generation, slot LIMIT 1",
            (program_id,)).fetchone()
        return self._row(r) if r else None

    def top(self, n: int = 10, round: int | None = None) -> list[ProgramRow]:
        return self.programs(status="ok", round=round, best_first=True)[:n]

    # -- population and generations --------------------------------------------------------
    def set_population(self, round: int, generation: int, members: dict[int, list[int]]) -> None:
        with self.tx():
            self.db.execute("DELETE FROM population WHERE round=? AND generation=?", (round, generation))
            self.db.executemany(
                "INSERT INTO population VALUES (?,?,?,?)",
                [(round, generation, isl, pid) for isl, ids in members.items() for pid in ids])

    def population(self, round: int, generation: int) -> dict[int, list[ProgramRow]]:
        rows = self.db.execute(
            "SELECT island, program FROM population WHERE round=? AND generation=? ORDER BY island",
            (round, generation)).fetchall()
        out: dict[int, list[ProgramRow]] = {}
        for isl, pid in rows:
            out.setdefault(isl, []).append(self.program(pid))
        # in the order the loop keeps them (grace.search.select.truncate: best score first, ties by
        # where proposed), not by row id: parents are drawn by position, so a resumed run must see
        # the members in the same order as an uninterrupted one
        return {isl: sorted(m, key=lambda r: (-(r.score or 0.0), r.round, r.generation, r.slot))
                for isl, m in out.items()}

    def complete_generation(self, round: int, generation: int, **info: Any) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO generations (round, generation, completed, best_program, best_fitness,"
            " best_heldout, evaluated, errors, seconds) VALUES (?,?,?,?,?,?,?,?,?)",
            (round, generation, time.time(), info.get("best_program"), info.get("best_fitness"),
             info.get("best_heldout"), info.get("evaluated"), info.get("errors"), info.get("seconds")))

    def completed_generations(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM generations ORDER BY round, generation").fetchall()
        return [dict(r) for r in rows]

    def last_completed(self) -> tuple[int, int] | None:
        r = self.db.execute(
            "SELECT round, generation FROM generations ORDER BY round DESC, generation DESC LIMIT 1").fetchone()
        return (int(r[0]), int(r[1])) if r else None

    # -- negatives -------------------------------------------------------------------------
    def add_negatives(self, version: int, path: str, source: str, episodes: int, env_steps: int = 0,
                      info: dict[str, Any] | None = None) -> None:
        self.db.execute("INSERT OR REPLACE INTO negatives VALUES (?,?,?,?,?,?,?)",
                        (version, path, source, episodes, env_steps, time.time(), json.dumps(info or {})))

    def negatives(self) -> list[dict[str, Any]]:
        rows = self.db.execute("SELECT * FROM negatives ORDER BY version").fetchall()
        return [dict(r) | {"info": json.loads(r["info"] or "{}")} for r in rows]

    # -- proposer calls (CallRecorder) -----------------------------------------------------
    def record_call(self, record: dict[str, Any]) -> None:
        self.db.execute(
            "INSERT INTO calls (key, operator, model, prompt, reply, prompt_tokens, completion_tokens,"
            " latency, error, cached, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (record.get("key"), record.get("operator"), record.get("model"),
             json.dumps(record.get("prompt")), json.dumps(record.get("reply")),
             record.get("prompt_tokens"), record.get("completion_tokens"), record.get("latency"),
             record.get("error"), int(bool(record.get("cached"))), time.time()))

    def get_reply(self, key: str) -> dict[str, Any] | None:
        r = self.db.execute(
            "SELECT * FROM calls WHERE key=? AND error IS NULL AND cached=0 ORDER BY id LIMIT 1", (key,)).fetchone()
        if r is None:
            return None
        d = dict(r)
        d["prompt"], d["reply"] = json.loads(d["prompt"]), json.loads(d["reply"])
        return d

    def call_stats(self) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT operator, COUNT(*) AS calls, SUM(error IS NOT NULL) AS errors, SUM(cached) AS cached,"
            " COALESCE(SUM(prompt_tokens),0) AS prompt_tokens,"
            " COALESCE(SUM(completion_tokens),0) AS completion_tokens, COALESCE(AVG(latency),0) AS latency"
            " FROM calls GROUP BY operator ORDER BY operator").fetchall()
        return [dict(r) for r in rows]

    def call_errors(self) -> list[tuple[str, int]]:
        """(error text, how many calls failed with it), for the calls sent (not cached)."""
        return [(str(e), int(n)) for e, n in self.db.execute(
            "SELECT error, COUNT(*) FROM calls WHERE error IS NOT NULL AND cached=0 GROUP BY error").fetchall()]

    # -- summaries (what `grace show` and the report read; no SQL outside this class) ----------
    def status_counts(self) -> dict[str, int]:
        """Programs per status (ok, error, invalid, duplicate, pending)."""
        return dict(self.db.execute("SELECT status, COUNT(*) FROM programs GROUP BY status").fetchall())

    def timing(self) -> dict[str, float | None]:
        """first: when the first program was created; last: when the last generation completed;
        generation_seconds: the sum of the generations' wall-clock seconds."""
        first = self.db.execute("SELECT MIN(created) FROM programs").fetchone()[0]
        last = self.db.execute("SELECT MAX(completed) FROM generations").fetchone()[0]
        seconds = self.db.execute("SELECT SUM(seconds) FROM generations").fetchone()[0]
        return {"first": first, "last": last, "generation_seconds": seconds}

    def population_members(self) -> list[tuple[int, int, int, str, float | None, float | None, float | None]]:
        """Every population member of every generation: (round, generation, island, program_id,
        fitness, heldout, score)."""
        return [tuple(r) for r in self.db.execute(
            "SELECT p.round, p.generation, p.island, q.program_id, q.fitness, q.heldout, q.score"
            " FROM population p JOIN programs q ON q.id = p.program").fetchall()]

    def proposal_outcomes(self) -> list[tuple[str, dict[str, Any], str, float | None]]:
        """(operator, meta, status, fitness) of every proposal, in proposal order."""
        rows = self.db.execute("SELECT operator, meta, status, fitness FROM programs ORDER BY id")
        return [(op, json.loads(meta or "{}") or {}, status, fit) for op, meta, status, fit in rows]

    def lineage(self, row_id: int, depth: int = 50) -> list[ProgramRow]:
        """The program and its first-parent ancestors, newest first."""
        chain = [self.program(row_id)]
        while len(chain) < depth and chain[-1].parents:
            parent = self.by_program_id(chain[-1].parents[0])
            if parent is None or parent.id in {c.id for c in chain}:
                break
            chain.append(parent)
        return chain


def open_reply_source(path: str | Path) -> Archive:
    """Another run's recorded LLM replies, read-only: a run directory or its archive.sqlite."""
    p = Path(path)
    return Archive(p / "archive.sqlite" if p.is_dir() else p, create=False)
