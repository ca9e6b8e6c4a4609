"""Reservoirs: sources scored into a workspace but never curated, kept for the pretrain track to search.

A reservoir is a workspace-shaped folder `WS/reservoirs/<name>/` (its own `pool/` of scored shards and its
own `index/`), so scoring and indexing reuse the same steps, and nothing in it reaches a curated set unless
the pretrain track retrieves it for a bad case (then its rows carry `provenance = reservoir:<name>`).
`WS/reservoirs/_reservoirs.json` lists them: name, source, rows, when added.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from pathlib import Path

from flywheel.store.shards import write_json_atomic
from flywheel.workspace import Workspace, WorkspaceError

_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Reservoir:
    name: str
    source: str
    rows: int
    added_at: str

    @property
    def provenance(self) -> str:
        return f"reservoir:{self.name}"


def reservoirs_dir(ws: Workspace) -> Path:
    return ws.reservoirs_dir


def reservoir_workspace(ws: Workspace, name: str) -> Workspace:
    """The workspace-shaped folder of reservoir `name` (pool/ and index/ inside)."""
    if not _NAME.match(name):
        raise WorkspaceError(f"invalid reservoir name {name!r}: lower-case letters, digits, - and _")
    return Workspace.at(reservoirs_dir(ws) / name)


def default_name(source: str) -> str:
    stem = Path(source.rstrip("/")).name.lower()
    return re.sub(r"[^a-z0-9_-]+", "-", stem).strip("-")[:64] or "reservoir"


def register(ws: Workspace, name: str, source: str, rows: int) -> Reservoir:
    reservoir_workspace(ws, name)
    path = reservoirs_dir(ws) / "_reservoirs.json"
    entries = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    entries[name] = {"source": source, "rows": rows, "added_at": dt.datetime.now(dt.UTC).isoformat()}
    write_json_atomic(path, entries)
    return Reservoir(name, **entries[name])


def list_reservoirs(ws: Workspace) -> list[Reservoir]:
    path = reservoirs_dir(ws) / "_reservoirs.json"
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [Reservoir(name, **entry) for name, entry in sorted(entries.items())]
