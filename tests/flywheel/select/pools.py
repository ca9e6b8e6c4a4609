"""Small hand-built pools for the selection tests: every row a known category cue, node and score."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

COLUMNS: dict[str, pa.DataType] = {
    "taxonomy_path": pa.string(),
    "aesthetic_score": pa.float32(),
    "face_area_fraction": pa.float32(),
    "text_area_fraction": pa.float32(),
    "text_lines": pa.int32(),
    "text_chars": pa.int32(),
    "text_char_height_min": pa.float32(),
    "text_language": pa.string(),
    "meta": pa.string(),
    "caption": pa.string(),
}


def write_pool(ws: Workspace, rows: Sequence[dict[str, Any]], shards: int = 2, drop: Sequence[str] = ()) -> None:
    """Write `rows` (id plus any of COLUMNS but `drop`) as a scored pool of `shards` shards; missing values are null."""
    store = ShardStore(ws.pool_dir)
    per = -(-len(rows) // shards)
    for part in range(shards):
        chunk = list(rows[part * per : (part + 1) * per])
        n = len(chunk)
        table = {
            "id": [r["id"] for r in chunk],
            "uri": [f"/src/{r['id']}.png" for r in chunk],
            "partition": [part] * n,
            "task": ["T2I"] * n,
            "image": [b"x"] * n,
            "file_bytes": [100] * n,
            "broken_reason": pa.array([None] * n, pa.string()),
        }
        for name, dtype in COLUMNS.items():
            if name in drop:
                continue
            table[name] = pa.array([r.get(name) for r in chunk], dtype)
        store.write(part, pa.table(table), f"fp{part}")
    store.write_manifest({})
