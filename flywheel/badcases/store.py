"""The bad-case store: SQLite in WAL mode under WORKSPACE/badcases/, images as content-addressed files.

Why SQLite: the store needs transactions that several annotators (CLI, dashboard, flows) commit
concurrently without losing a label, and it must live inside the workspace with no server. Every write
runs in `BEGIN IMMEDIATE` (the write lock is taken up front, so two writers never both read-then-write
stale state) with a busy timeout, so concurrent writers queue instead of failing.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from flywheel.badcases.images import image_path, store_image
from flywheel.badcases.schema import JSON_FIELDS, SCHEMA_SQL, SCHEMA_VERSION, SOURCES, TRACKS, BadCase
from flywheel.errors import UserError

BUSY_TIMEOUT_S = 60.0


class BadCaseError(UserError, LookupError):
    """Unknown case id, bad track name, and other store misuse; the message says what to fix."""


@dataclass(frozen=True)
class IngestResult:
    added: int
    skipped: int  # already in the store (same content key)

    @property
    def total(self) -> int:
        return self.added + self.skipped


@dataclass(frozen=True)
class Route:
    case_id: str
    track: str
    by: str  # 'rule:<name>', 'learned', ...
    evidence: dict[str, Any]


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


class BadCaseStore:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.images_dir = self.root / "images"
        self.path = self.root / "badcases.sqlite"
        self._local = threading.local()
        with self._connect() as con:
            migrate(con)
            con.executescript(SCHEMA_SQL)
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    @classmethod
    def for_workspace(cls, ws_root: Path) -> BadCaseStore:
        from flywheel.workspace import Workspace

        return cls(Workspace(ws_root).badcases_dir)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            con.row_factory = sqlite3.Row
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=NORMAL")
            con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA foreign_keys=ON")
            yield con
        finally:
            con.close()

    @contextmanager
    def reading(self) -> Iterator[sqlite3.Connection]:
        """A read connection kept per thread: its page cache stays warm across requests (a dashboard serves
        many small reads from a thread pool; reopening costs the cache). Autocommit, so every statement sees
        the latest committed state and no reader holds back a WAL checkpoint."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
            con.row_factory = sqlite3.Row
            con.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_S * 1000)}")
            con.execute("PRAGMA cache_size=-16384")  # 16 MiB
            con.execute("PRAGMA query_only=1")
            self._local.con = con
        yield con

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back on any error (which is re-raised)."""
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")

    # --- writes -------------------------------------------------------------------------------------------
    def put_image(self, data: bytes, what: str) -> str:
        return store_image(self.images_dir, data, what)

    def image_file(self, digest: str) -> Path:
        return image_path(self.images_dir, digest)

    def ingest(self, cases: Iterable[BadCase]) -> IngestResult:
        """Insert all cases in one transaction; a content key already present is skipped, not duplicated."""
        rows = []
        for case in cases:
            case.check()
            row = case.row()
            for key in ("metrics", "failure_tags"):
                row[key] = json.dumps(row[key], sort_keys=True)
            row["case_id"] = case.content_key[:16]
            row["ingested_at"] = now()
            rows.append(row)
        if not rows:
            return IngestResult(0, 0)
        cols = list(rows[0])
        sql = f"INSERT OR IGNORE INTO cases ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
        added = 0
        with self.transaction() as con:
            for row in rows:
                added += con.execute(sql, row).rowcount
        return IngestResult(added, len(rows) - added)

    def decide(self, case_id: str, track: str, by: str, note: str | None = None) -> int:
        """Record an annotator's decision and make it the case's track; returns the decision id."""
        if track not in TRACKS:
            raise BadCaseError(f"unknown track {track!r}; choose one of {TRACKS}")
        if not by.strip():
            raise BadCaseError("--by must name the annotator")
        with self.transaction() as con:
            return decide_in(con, case_id, track, by, note)

    def record_routes(self, routes: Iterable[Route], *, override_annotators: bool = False) -> int:
        """Store evidence for every route; set the track unless an annotator already decided the case."""
        at, n = now(), 0
        routes = list(routes)
        for r in routes:  # names are checked here, not by SQL, so a new track needs no migration
            if r.track not in TRACKS:
                raise BadCaseError(f"case {r.case_id}: unknown track {r.track!r}; choose one of {TRACKS}")
        with self.transaction() as con:
            for r in routes:
                con.execute(
                    "UPDATE cases SET evidence = ? WHERE case_id = ?",
                    (json.dumps(r.evidence, sort_keys=True), r.case_id),
                )
                guard = "" if override_annotators else " AND (track_by IS NULL OR track_by NOT LIKE 'annotator:%')"
                n += con.execute(
                    f"UPDATE cases SET track = ?, track_by = ?, routed_at = ? WHERE case_id = ?{guard}",
                    (r.track, r.by, at, r.case_id),
                ).rowcount
        return n

    # --- reads --------------------------------------------------------------------------------------------
    def get(self, case_id: str) -> dict[str, Any]:
        with self.reading() as con:
            row = con.execute("SELECT * FROM cases WHERE case_id = ?", (case_id,)).fetchone()
            if row is None:
                raise BadCaseError(f"no bad case {case_id!r}; see `flywheel badcases list`")
            out = _decode(row)
            out["decisions"] = [
                dict(d)
                for d in con.execute(
                    "SELECT d.decision_id, d.track, d.by, d.note, d.at, u.by AS undone_by, u.at AS undone_at "
                    "FROM decisions d LEFT JOIN decision_undone u USING (decision_id) "
                    "WHERE d.case_id = ? ORDER BY d.decision_id",
                    (case_id,),
                )
            ]
        return out

    def list(
        self, *, track: str | None = None, source: str | None = None, kind: str | None = "bad", limit: int | None = None
    ) -> list[dict[str, Any]]:
        if source is not None and source not in SOURCES:
            raise BadCaseError(f"unknown source {source!r}; choose one of {SOURCES}")
        if track is not None and track not in (*TRACKS, "unrouted"):
            raise BadCaseError(f"unknown track {track!r}; choose one of {(*TRACKS, 'unrouted')}")
        where, params = [], []
        if track == "unrouted":
            where.append("track IS NULL")
        elif track is not None:
            where.append("track = ?")
            params.append(track)
        if source is not None:
            where.append("source = ?")
            params.append(source)
        if kind is not None:
            where.append("kind = ?")
            params.append(kind)
        sql = "SELECT * FROM cases" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY ingested_at, case_id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        with self._connect() as con:
            return [_decode(r) for r in con.execute(sql, params)]

    def decisions(self) -> list[dict[str, Any]]:
        with self._connect() as con:
            return [dict(r) for r in con.execute("SELECT * FROM decisions ORDER BY decision_id")]

    def latest_decisions(self) -> dict[str, str]:
        """case_id -> the track of its most recent annotator decision (what the learned router trains on)."""
        with self._connect() as con:
            rows = con.execute("""SELECT case_id, track FROM decisions d WHERE decision_id =
                                  (SELECT max(decision_id) FROM decisions WHERE case_id = d.case_id
                                   AND decision_id NOT IN (SELECT decision_id FROM decision_undone))""").fetchall()
        return {r["case_id"]: r["track"] for r in rows}

    def counts(self) -> dict[str, int]:
        with self._connect() as con:
            rows = con.execute(
                "SELECT kind, coalesce(track, 'unrouted') AS t, count(*) AS n FROM cases GROUP BY 1, 2"
            ).fetchall()
        return {f"{r['kind']}:{r['t']}": r["n"] for r in rows}


# Tables whose version-0 definition spelled the track names in a CHECK constraint (SQLite cannot drop one).
_REBUILT = ("cases", "decisions")


def migrate(con: sqlite3.Connection) -> None:
    """Bring a store of an older schema to SCHEMA_VERSION, all or nothing.

    Version 0 had `CHECK (track IN (...))` on cases and decisions, so a new track could not be stored. SQLite
    cannot alter a constraint, so each table is rebuilt the documented way: create the new definition under
    a temporary name, copy the rows, drop the old table, rename, recreate the indexes - in one BEGIN
    IMMEDIATE transaction (a concurrent opener waits, then sees version 1 and does nothing), with foreign
    keys off for the swap and checked before the commit."""
    if con.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION:
        return
    con.execute("PRAGMA foreign_keys=OFF")  # a no-op inside a transaction, so set before BEGIN
    con.execute("BEGIN IMMEDIATE")
    try:
        if con.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:
            target = _target_tables()
            for name in _REBUILT:
                row = con.execute("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
                if row is None or "CHECK (track" not in row[0]:
                    continue  # a fresh store, or this table already has the new definition
                cols = ", ".join(r[1] for r in con.execute(f"PRAGMA table_info({name})"))
                con.execute(target[name].replace(f"CREATE TABLE {name} (", f"CREATE TABLE {name}__new (", 1))
                con.execute(f"INSERT INTO {name}__new ({cols}) SELECT {cols} FROM {name}")
                con.execute(f"DROP TABLE {name}")  # drops its indexes too; SCHEMA_SQL recreates them
                con.execute(f"ALTER TABLE {name}__new RENAME TO {name}")
            if con.execute("PRAGMA foreign_key_check").fetchall():
                raise BadCaseError("bad-case store migration: foreign keys do not hold; the store was not changed")
            con.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    else:
        con.execute("COMMIT")
    finally:
        con.execute("PRAGMA foreign_keys=ON")


def _target_tables() -> dict[str, str]:
    """CREATE TABLE statements of the current schema, as SQLite itself splits SCHEMA_SQL."""
    mem = sqlite3.connect(":memory:")
    try:
        mem.executescript(SCHEMA_SQL)
        return {r[0]: r[1] for r in mem.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'")}
    finally:
        mem.close()


def decide_in(con: sqlite3.Connection, case_id: str, track: str, by: str, note: str | None) -> int:
    """One decision inside an open write transaction; the replaced routing is kept so it can be undone."""
    prior = con.execute("SELECT track, track_by, routed_at FROM cases WHERE case_id = ?", (case_id,)).fetchone()
    if prior is None:
        raise BadCaseError(f"no bad case {case_id!r}; see `flywheel badcases list`")
    at = now()
    cur = con.execute(
        "INSERT INTO decisions (case_id, track, by, note, at) VALUES (?, ?, ?, ?, ?)",
        (case_id, track, by, note, at),
    )
    decision_id = int(cur.lastrowid or 0)
    con.execute(
        "INSERT INTO decision_prior (decision_id, track, track_by, routed_at) VALUES (?, ?, ?, ?)",
        (decision_id, prior["track"], prior["track_by"], prior["routed_at"]),
    )
    con.execute(
        "UPDATE cases SET track = ?, track_by = ?, routed_at = ? WHERE case_id = ?",
        (track, f"annotator:{by}", at, case_id),
    )
    return decision_id


def _decode(row: sqlite3.Row) -> dict[str, Any]:
    out = dict(row)
    for key in JSON_FIELDS:
        if out.get(key) is not None:
            out[key] = json.loads(out[key])
    return out
