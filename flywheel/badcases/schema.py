"""The bad-case record and the store's SQL schema (documented here once; `flywheel badcases show` prints it).

A case is one model output that failed (kind "bad") or, for evaluation rows that passed, a reference output
(kind "reference") kept so the RL track can pair a good output with a bad one of the same prompt. Images are
not inlined: `input_image`/`output_image` are SHA-256 content hashes of files under badcases/images/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from flywheel.errors import UserError
from flywheel.tracks import registry

SOURCES = ("evaluation", "mining", "feedback")
KINDS = ("bad", "reference")
# Track names come from flywheel.tracks.registry and are validated in Python, never in SQL: a new track needs
# no migration. These two names stay for importers; they are read from the registry, not spelled here.
TRACKS = registry.names()  # every track a case can be in (dismiss: an annotator says it is not a model error)
ROUTABLE_TRACKS = registry.routable()

# PRAGMA user_version of a store with SCHEMA_SQL. Version 0 (stores before it) had the track names in CHECK
# constraints on cases.track and decisions.track; flywheel.badcases.store.migrate rebuilds those tables.
SCHEMA_VERSION = 1

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS cases (
    case_id      TEXT PRIMARY KEY,        -- first 16 hex of content_key
    content_key  TEXT NOT NULL UNIQUE,    -- blake2b of the source record; re-ingesting adds nothing twice
    kind         TEXT NOT NULL CHECK (kind IN ('bad', 'reference')),
    source       TEXT NOT NULL CHECK (source IN ('evaluation', 'mining', 'feedback')),
    prompt       TEXT NOT NULL,
    prompt_id    TEXT,                    -- evaluation prompt id; several seeds share it
    task         TEXT,                    -- T2I or TI2I
    category     TEXT,
    expected_text  TEXT,
    expected_label TEXT,
    input_image  TEXT,                    -- sha256 of the TI2I source image file
    output_image TEXT,                    -- sha256 of the generated image file
    seed         INTEGER,
    metrics      TEXT NOT NULL DEFAULT '{}',   -- JSON object name -> float
    reward       REAL,
    failure_tags TEXT NOT NULL DEFAULT '[]',   -- JSON list (flywheel.evaluation.FAILURE_TAGS for evaluations)
    checkpoint   TEXT,
    step         INTEGER,
    complaint    TEXT,                    -- user feedback / mining note, free text
    rating       REAL,                    -- user rating (1 = worst .. 5 = best)
    origin       TEXT NOT NULL,           -- file and row/line it came from
    created_at   TEXT,
    ingested_at  TEXT NOT NULL,
    evidence     TEXT,                    -- JSON: attribution evidence of the last routing
    track        TEXT,                    -- a name of flywheel.tracks.registry (checked in Python)
    track_by     TEXT,                    -- 'rule:<name>', 'learned', 'blend:<...>' or 'annotator:<name>'
    routed_at    TEXT
);
CREATE INDEX IF NOT EXISTS cases_track ON cases (track);
CREATE INDEX IF NOT EXISTS cases_prompt_id ON cases (prompt_id);
CREATE TABLE IF NOT EXISTS decisions (
    decision_id INTEGER PRIMARY KEY AUTOINCREMENT,
    case_id     TEXT NOT NULL REFERENCES cases (case_id),
    track       TEXT NOT NULL,
    by          TEXT NOT NULL,
    note        TEXT,
    at          TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS decisions_case ON decisions (case_id);
-- Triage (flywheel.badcases.triage): the state a decision replaced (so `undo` can restore it), undone
-- decisions (kept for the history, ignored by the learned router), claims with expiry, and assignments.
CREATE TABLE IF NOT EXISTS decision_prior (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions (decision_id),
    track       TEXT,
    track_by    TEXT,
    routed_at   TEXT
);
CREATE TABLE IF NOT EXISTS decision_undone (
    decision_id INTEGER PRIMARY KEY REFERENCES decisions (decision_id),
    by          TEXT NOT NULL,
    at          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS claims (
    case_id TEXT PRIMARY KEY REFERENCES cases (case_id),
    by      TEXT NOT NULL,
    until   TEXT NOT NULL                 -- ISO UTC; an expired claim is free to take
);
CREATE TABLE IF NOT EXISTS assignments (
    case_id  TEXT PRIMARY KEY REFERENCES cases (case_id),
    assignee TEXT NOT NULL,
    by       TEXT NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS assignments_assignee ON assignments (assignee);
CREATE INDEX IF NOT EXISTS cases_queue ON cases (kind, ingested_at, case_id);
CREATE INDEX IF NOT EXISTS cases_prompt ON cases (prompt);
-- Covers every triage filter, so counting a filtered queue scans this narrow index instead of the table.
CREATE INDEX IF NOT EXISTS cases_triage ON cases (kind, source, checkpoint, track, track_by, failure_tags);
CREATE INDEX IF NOT EXISTS cases_output_image ON cases (output_image);
CREATE INDEX IF NOT EXISTS cases_input_image ON cases (input_image);
"""

JSON_FIELDS = ("metrics", "failure_tags", "evidence")


@dataclass
class BadCase:
    """One record to ingest (the store fills case_id, ingested_at and routing fields)."""

    content_key: str
    kind: str
    source: str
    prompt: str
    origin: str
    prompt_id: str | None = None
    task: str | None = None
    category: str | None = None
    expected_text: str | None = None
    expected_label: str | None = None
    input_image: str | None = None
    output_image: str | None = None
    seed: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    reward: float | None = None
    failure_tags: list[str] = field(default_factory=list)
    checkpoint: str | None = None
    step: int | None = None
    complaint: str | None = None
    rating: float | None = None
    created_at: str | None = None

    def check(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"{self.origin}: kind {self.kind!r} must be one of {KINDS}")
        if self.source not in SOURCES:
            raise UserError(f"{self.origin}: source {self.source!r} must be one of {SOURCES}")
        if not self.prompt or not self.prompt.strip():
            raise UserError(f"{self.origin}: empty prompt")

    def row(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)
