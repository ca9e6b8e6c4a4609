"""A store written before track names left the SQL (schema version 0) opens, keeps its rows, and then takes a
track the old CHECK constraints did not list."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flywheel.badcases import BadCase
from flywheel.badcases.schema import SCHEMA_SQL, SCHEMA_VERSION
from flywheel.badcases.store import BadCaseStore, Route
from flywheel.tracks import registry

# The version-0 definitions of the two tables that carried the track list (as shipped before the registry).
OLD_TRACK_CHECK = "CHECK (track IS NULL OR track IN ('rl', 'pretrain', 'prompt', 'dismiss'))"
OLD_DECISION_CHECK = "CHECK (track IN ('rl', 'pretrain', 'prompt', 'dismiss'))"


def _old_schema() -> str:
    sql = SCHEMA_SQL.replace(
        "    track        TEXT,                    -- a name of flywheel.tracks.registry (checked in Python)\n",
        f"    track        TEXT {OLD_TRACK_CHECK},\n",
    ).replace(
        "    track       TEXT NOT NULL,\n    by", f"    track       TEXT NOT NULL {OLD_DECISION_CHECK},\n    by", 1
    )
    assert OLD_TRACK_CHECK in sql and OLD_DECISION_CHECK in sql
    return sql


def _old_store(root: Path) -> None:
    root.mkdir(parents=True)
    con = sqlite3.connect(root / "badcases.sqlite", isolation_level=None)
    con.executescript(_old_schema())
    con.execute(
        "INSERT INTO cases (case_id, content_key, kind, source, prompt, origin, ingested_at, track, track_by) "
        "VALUES ('c1', 'k1', 'bad', 'feedback', 'a red cube', 'old.jsonl:1', '2026-01-01', 'rl', 'rule:x')"
    )
    con.execute("INSERT INTO decisions (case_id, track, by, at) VALUES ('c1', 'rl', 'ann', '2026-01-01')")
    con.execute("INSERT INTO decision_prior (decision_id, track) VALUES (1, NULL)")
    with pytest.raises(sqlite3.IntegrityError):  # what the migration is for
        con.execute("UPDATE cases SET track = 'newtrack' WHERE case_id = 'c1'")
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    con.close()


def test_old_store_is_rebuilt_without_track_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _old_store(tmp_path / "badcases")
    store = BadCaseStore(tmp_path / "badcases")
    with store._connect() as con:
        assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        ddl = " ".join(r[0] for r in con.execute("SELECT sql FROM sqlite_master WHERE sql IS NOT NULL"))
        indexes = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "CHECK (track" not in ddl
    assert {"cases_track", "cases_triage", "decisions_case"} <= indexes
    case = store.get("c1")
    assert (case["track"], case["track_by"], case["prompt"]) == ("rl", "rule:x", "a red cube")
    assert [d["track"] for d in case["decisions"]] == ["rl"]
    # decision ids continue after the migrated ones (AUTOINCREMENT survives the rebuild)
    assert store.decide("c1", "prompt", "ann") == 2
    # a track registered later is stored with no migration; names are still checked in Python
    monkeypatch.setattr(registry, "_TRACKS", {**registry._TRACKS})
    registry.register(registry.Track("newtrack", "a track added after the store was made", None))
    monkeypatch.setattr("flywheel.badcases.store.TRACKS", registry.names())
    assert store.decide("c1", "newtrack", "ann") == 3
    assert store.get("c1")["track"] == "newtrack"
    BadCaseStore(tmp_path / "badcases")  # reopening a migrated store changes nothing
    assert store.get("c1")["track"] == "newtrack"


def test_names_are_checked_in_python(tmp_path: Path) -> None:
    store = BadCaseStore(tmp_path / "bc")
    store.ingest([BadCase(content_key="k" * 32, kind="bad", source="feedback", prompt="p", origin="t")])
    (case,) = store.list()
    with pytest.raises(Exception, match="unknown track 'nope'"):
        store.record_routes([Route(case["case_id"], "nope", "rule:x", {})])
    with pytest.raises(Exception, match="unknown track 'nope'"):
        store.decide(case["case_id"], "nope", "ann")
