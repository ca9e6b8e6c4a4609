"""Index metadata columns come from the pool's Parquet schema (field metadata), not from a list in the core."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.retrieval.metadata import FIXED_TYPES, pool_metadata, score_columns
from flywheel.schema import Column
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace


def _pool(ws: Workspace) -> None:
    fields = [
        Column("id", pa.string(), "hex", "key").field(),
        Column("uri", pa.string(), "", "where").field(),
        Column("image", pa.binary(), "bytes", "bytes").field(),
        Column("caption", pa.string(), "", "caption").field(),
        Column("file_bytes", pa.int64(), "bytes", "size").field(),  # core: not copied
        Column("rotation_net_upright_prob", pa.float32(), "0-1", "upright", owner="rotation_net").field(),
        Column("nsfw_score", pa.float32(), "0-1", "nsfw", owner="nsfw").field(),
        Column("dedup_phash_bits", pa.list_(pa.int8()), "", "not scalar", owner="dedup").field(),
        pa.field("hand_made_score", pa.float64()),  # no metadata and not a core name: a score
    ]
    table = pa.table(
        {
            "id": ["a", "b"],
            "uri": ["a.jpg", "b.jpg"],
            "image": [b"x", b"y"],
            "caption": ["one", None],
            "file_bytes": [1, 2],
            "rotation_net_upright_prob": pa.array([0.9, 0.2], pa.float32()),
            "nsfw_score": pa.array([0.1, 0.7], pa.float32()),
            "dedup_phash_bits": pa.array([[1], [0]], pa.list_(pa.int8())),
            "hand_made_score": [1.0, 2.0],
        },
        schema=pa.schema(fields),
    )
    store = ShardStore(ws.pool_dir)
    store.write(0, table, "fp")
    store.write_manifest({})


def test_score_columns_follow_the_pool_schema(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    meta = pool_metadata(ws)
    pool_schema = pq.read_schema(ws.require_pool()[0])
    assert score_columns(pool_schema) == ["rotation_net_upright_prob", "nsfw_score", "hand_made_score"]
    assert meta.column_names[:3] == ["id", "uri", "caption"]
    for name in ("rotation_net_upright_prob", "nsfw_score", "hand_made_score", *FIXED_TYPES):
        assert name in meta.column_names, name
    assert "rotation_upright_prob" not in meta.column_names  # not in this pool, and no longer hard-coded
    assert "file_bytes" not in meta.column_names and "dedup_phash_bits" not in meta.column_names
    by_id = {r["id"]: r for r in meta.to_pylist()}
    assert by_id["b"]["nsfw_score"] == pa.scalar(0.7, pa.float32()).as_py()
    assert by_id["a"]["broken_reason"] is None and by_id["a"]["width"] is None  # fixed, absent from the pool
    assert by_id["a"]["curated"] is False and by_id["a"]["kept_in"] == []
