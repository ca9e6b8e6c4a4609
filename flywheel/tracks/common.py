"""Shared pieces of the tracks' writers: output folders and atomic single-shard writes with provenance."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from flywheel.errors import UserError
from flywheel.store.shards import ShardStore
from flywheel.tracks import registry
from flywheel.workspace import Workspace

TRACK_NAMES = registry.data_tracks()  # kept for importers; the registry is the declaration


def track_dir(ws: Workspace, track: str) -> Path:
    if track not in registry.data_tracks():
        raise UserError(f"unknown track {track!r}; known: {registry.data_tracks()}")
    return ws.tracks_dir(track)


def write_track(ws: Workspace, track: str, table: pa.Table, extra: dict[str, object]) -> Path:
    """Write the track's data as shard 0 of a ShardStore (tmp + rename, marker, manifest): readers that take
    curated shards take these too. Every run replaces the track's data, since it derives from the store."""
    store = ShardStore(track_dir(ws, track))
    info = store.write(0, table, fingerprint=f"track:{track}")
    store.write_manifest({"track": track, **extra})
    return store.root / info.shard
