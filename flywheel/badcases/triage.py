"""Triage on the bad-case store: a filtered queue, claims with expiry, assignments, undo and bulk decisions.

Several annotators work the same store at once (the dashboard serves each from its own thread). Everything
that writes runs in the store's `BEGIN IMMEDIATE` transaction, so a claim is checked and taken atomically
(two annotators never both get a case) and a decision, its claim release and its undo record commit
together or not at all. A claim expires by itself (`until`), so a closed browser tab never locks a case.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from flywheel.badcases.schema import SOURCES, TRACKS
from flywheel.badcases.store import BadCaseError, BadCaseStore, _decode, decide_in, now

CLAIM_MINUTES = 15.0
UNDECIDED_SQL = "(c.track_by IS NULL OR c.track_by NOT LIKE 'annotator:%')"


class ClaimedError(BadCaseError):
    """Another annotator holds an unexpired claim on the case."""


@dataclass(frozen=True)
class QueueFilter:
    """What the queue shows; every field is optional and they combine with AND."""

    track: str | None = None  # a TRACK or 'unrouted'
    source: str | None = None
    tag: str | None = None  # a failure tag
    checkpoint: str | None = None
    undecided: bool = False
    assigned_to: str | None = None

    def check(self) -> None:
        if self.source is not None and self.source not in SOURCES:
            raise BadCaseError(f"unknown source {self.source!r}; choose one of {SOURCES}")
        if self.track is not None and self.track not in (*TRACKS, "unrouted"):
            raise BadCaseError(f"unknown track {self.track!r}; choose one of {(*TRACKS, 'unrouted')}")

    def sql(self) -> tuple[str, list[Any]]:
        self.check()
        where, params = ["c.kind = 'bad'"], []
        if self.track == "unrouted":
            where.append("c.track IS NULL")
        elif self.track is not None:
            where.append("c.track = ?")
            params.append(self.track)
        if self.source is not None:
            where.append("c.source = ?")
            params.append(self.source)
        if self.tag is not None:
            # instr() on the stored JSON text first: a cheap test that skips json_each on most rows.
            where.append(
                "instr(c.failure_tags, ?) > 0 AND EXISTS (SELECT 1 FROM json_each(c.failure_tags) WHERE value = ?)"
            )
            params += [json.dumps(self.tag), self.tag]
        if self.checkpoint is not None:
            where.append("c.checkpoint = ?")
            params.append(self.checkpoint)
        if self.undecided:
            where.append(UNDECIDED_SQL)
        if self.assigned_to is not None:
            where.append("c.case_id IN (SELECT case_id FROM assignments WHERE assignee = ?)")
            params.append(self.assigned_to)
        return " AND ".join(where), params


def _utc(minutes: float = 0.0) -> str:
    return (datetime.now(UTC) + timedelta(minutes=minutes)).isoformat(timespec="microseconds")


class Triage:
    """Triage operations over one BadCaseStore (which owns the schema and the transactions)."""

    def __init__(self, store: BadCaseStore, claim_minutes: float = CLAIM_MINUTES) -> None:
        self.store = store
        self.claim_minutes = claim_minutes

    # --- queue --------------------------------------------------------------------------------------------
    def count(self, flt: QueueFilter) -> int:
        """How many cases the filter matches (a scan of the covering index: tens of ms at 100k cases)."""
        where, params = flt.sql()
        with self.store.reading() as con:
            return int(con.execute(f"SELECT count(*) FROM cases c WHERE {where}", params).fetchone()[0])

    def page(self, flt: QueueFilter, *, limit: int = 50, offset: int = 0) -> list[dict[str, Any]]:
        """One page of the queue (oldest first) with claim and assignment columns."""
        return self.queue(flt, limit=limit, offset=offset, with_total=False)[0]

    def queue(
        self, flt: QueueFilter, *, limit: int = 50, offset: int = 0, with_total: bool = True
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of the queue (oldest first) with claim and assignment columns, and the total count
        (-1 without `with_total`)."""
        where, params = flt.sql()
        sql = f"""SELECT c.case_id, c.source, c.prompt, c.task, c.category, c.checkpoint, c.track, c.track_by,
                         c.failure_tags, c.output_image, c.reward, c.ingested_at,
                         a.assignee, cl.by AS claimed_by, cl.until AS claimed_until
                  FROM cases c LEFT JOIN assignments a USING (case_id)
                  LEFT JOIN claims cl ON cl.case_id = c.case_id AND cl.until > ?
                  WHERE {where} ORDER BY c.ingested_at, c.case_id LIMIT ? OFFSET ?"""
        with self.store.reading() as con:
            rows = [_decode(r) for r in con.execute(sql, [_utc(), *params, int(limit), int(offset)])]
        return rows, (self.count(flt) if with_total else -1)

    def neighbour(self, case_id: str, flt: QueueFilter, *, step: int) -> str | None:
        """The case after (step=+1) or before (step=-1) `case_id` in the queue order, or None at the end."""
        where, params = flt.sql()
        op, order = (">", "ASC") if step > 0 else ("<", "DESC")
        with self.store.reading() as con:
            cur = con.execute("SELECT ingested_at FROM cases WHERE case_id = ?", (case_id,)).fetchone()
            if cur is None:
                raise BadCaseError(f"no bad case {case_id!r}")
            row = con.execute(
                f"""SELECT c.case_id FROM cases c WHERE {where} AND (c.ingested_at, c.case_id) {op} (?, ?)
                    ORDER BY c.ingested_at {order}, c.case_id {order} LIMIT 1""",
                [*params, cur["ingested_at"], case_id],
            ).fetchone()
        return None if row is None else str(row["case_id"])

    def checkpoints(self) -> list[str]:
        with self.store.reading() as con:
            return [r[0] for r in con.execute("SELECT DISTINCT checkpoint FROM cases WHERE checkpoint IS NOT NULL")]

    # --- claims and assignments ---------------------------------------------------------------------------
    def claim(self, case_id: str, by: str) -> str:
        """Claim the case for `by` (renewing their own claim); returns the expiry. Raises ClaimedError."""
        until = _utc(self.claim_minutes)
        with self.store.transaction() as con:
            self._require_case(con, case_id)
            holder = self._holder(con, case_id)
            if holder is not None and holder[0] != by:
                raise ClaimedError(f"case {case_id} is claimed by {holder[0]} until {holder[1]}")
            con.execute("INSERT OR REPLACE INTO claims (case_id, by, until) VALUES (?, ?, ?)", (case_id, by, until))
        return until

    def release(self, case_id: str, by: str) -> bool:
        with self.store.transaction() as con:
            return con.execute("DELETE FROM claims WHERE case_id = ? AND by = ?", (case_id, by)).rowcount > 0

    def holder(self, case_id: str) -> tuple[str, str] | None:
        """(annotator, until) of the unexpired claim on the case, or None."""
        with self.store.reading() as con:
            return self._holder(con, case_id)

    def assign(self, case_ids: list[str], assignee: str, by: str) -> int:
        """Assign cases to an annotator (replacing earlier assignments); returns how many were assigned."""
        if not assignee.strip():
            raise BadCaseError("assignment needs an annotator name")
        at = now()
        with self.store.transaction() as con:
            for cid in case_ids:
                self._require_case(con, cid)
                con.execute(
                    "INSERT OR REPLACE INTO assignments (case_id, assignee, by, at) VALUES (?, ?, ?, ?)",
                    (cid, assignee, by, at),
                )
        return len(case_ids)

    # --- decisions ----------------------------------------------------------------------------------------
    def decide(self, case_id: str, track: str, by: str, note: str | None = None, *, bulk: bool = False) -> list[int]:
        """Decide the case (and with `bulk`, every undecided unclaimed bad case with the same prompt).

        Refused when another annotator holds the claim. The decider's claims on the decided cases are
        released in the same transaction. Returns the decision ids.
        """
        if track not in TRACKS:
            raise BadCaseError(f"unknown track {track!r}; choose one of {TRACKS}")
        if not by.strip():
            raise BadCaseError("a decision must name the annotator")
        with self.store.transaction() as con:
            row = self._require_case(con, case_id)
            holder = self._holder(con, case_id)
            if holder is not None and holder[0] != by:
                raise ClaimedError(f"case {case_id} is claimed by {holder[0]} until {holder[1]}")
            targets = [case_id]
            if bulk:
                others = con.execute(
                    f"""SELECT c.case_id FROM cases c WHERE c.kind = 'bad' AND c.prompt = ? AND c.case_id != ?
                        AND {UNDECIDED_SQL} AND NOT EXISTS (SELECT 1 FROM claims cl WHERE cl.case_id = c.case_id
                        AND cl.by != ? AND cl.until > ?) ORDER BY c.ingested_at, c.case_id""",
                    (row["prompt"], case_id, by, _utc()),
                ).fetchall()
                targets += [r["case_id"] for r in others]
            ids = [decide_in(con, cid, track, by, note) for cid in targets]
            con.executemany("DELETE FROM claims WHERE case_id = ? AND by = ?", [(cid, by) for cid in targets])
        return ids

    def same_prompt_undecided(self, case_id: str) -> int:
        """How many other undecided bad cases share this case's prompt (what a bulk decision would touch)."""
        with self.store.reading() as con:
            row = con.execute(
                f"""SELECT count(*) FROM cases c WHERE c.kind = 'bad' AND {UNDECIDED_SQL}
                    AND c.prompt = (SELECT prompt FROM cases WHERE case_id = ?) AND c.case_id != ?""",
                (case_id, case_id),
            ).fetchone()
        return int(row[0])

    def undo(self, by: str) -> dict[str, Any] | None:
        """Undo `by`'s most recent decision that is not undone yet, restoring the case's earlier routing.

        Only the case's latest decision may be undone (undoing an older one would resurrect a state someone
        else already replaced); returns the undone decision, or None when there is nothing to undo.
        """
        with self.store.transaction() as con:
            row = con.execute(
                """SELECT d.decision_id, d.case_id, d.track FROM decisions d WHERE d.by = ?
                   AND d.decision_id NOT IN (SELECT decision_id FROM decision_undone)
                   ORDER BY d.decision_id DESC LIMIT 1""",
                (by,),
            ).fetchone()
            if row is None:
                return None
            latest = con.execute(
                """SELECT max(decision_id) FROM decisions WHERE case_id = ?
                   AND decision_id NOT IN (SELECT decision_id FROM decision_undone)""",
                (row["case_id"],),
            ).fetchone()[0]
            if latest != row["decision_id"]:
                raise BadCaseError(f"case {row['case_id']} was decided again by someone else since; not undone")
            prior = con.execute(
                "SELECT track, track_by, routed_at FROM decision_prior WHERE decision_id = ?", (row["decision_id"],)
            ).fetchone()
            con.execute(
                "INSERT INTO decision_undone (decision_id, by, at) VALUES (?, ?, ?)", (row["decision_id"], by, now())
            )
            if prior is not None:
                con.execute(
                    "UPDATE cases SET track = ?, track_by = ?, routed_at = ? WHERE case_id = ?",
                    (prior["track"], prior["track_by"], prior["routed_at"], row["case_id"]),
                )
        return dict(row)

    # --- helpers ------------------------------------------------------------------------------------------
    @staticmethod
    def _require_case(con: sqlite3.Connection, case_id: str) -> sqlite3.Row:
        row = con.execute("SELECT case_id, prompt FROM cases WHERE case_id = ?", (case_id,)).fetchone()
        if row is None:
            raise BadCaseError(f"no bad case {case_id!r}; see `flywheel badcases list`")
        return row

    @staticmethod
    def _holder(con: sqlite3.Connection, case_id: str) -> tuple[str, str] | None:
        row = con.execute("SELECT by, until FROM claims WHERE case_id = ? AND until > ?", (case_id, _utc())).fetchone()
        return None if row is None else (str(row["by"]), str(row["until"]))
