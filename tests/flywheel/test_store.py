import json

import pyarrow as pa
import pytest

from flywheel.store.shards import ShardStore, StaleShardError


def _table(n: int) -> pa.Table:
    return pa.table({"uri": [f"u{i}" for i in range(n)], "x": list(range(n))})


def test_write_marks_complete_and_manifest_adds_up(tmp_path):
    store = ShardStore(tmp_path / "pool")
    store.write(0, _table(3), "fp0")
    store.write(1, _table(5), "fp1")
    assert store.completed(0, "fp0").rows == 3
    manifest = store.write_manifest()
    assert manifest["rows"] == 8 and [s["shard"] for s in manifest["shards"]] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert json.loads((tmp_path / "pool" / "_manifest.json").read_text())["rows"] == 8
    assert manifest["shards"][1]["stats"]["x"]["max"] == 4


def test_shard_without_marker_or_with_changed_size_is_not_complete(tmp_path):
    store = ShardStore(tmp_path)
    store.write(0, _table(3), "fp")
    store.marker_path(0).unlink()
    assert store.completed(0, "fp") is None
    store.write(0, _table(3), "fp")
    with store.shard_path(0).open("ab") as fh:
        fh.write(b"junk")
    assert store.completed(0, "fp") is None


def test_stale_fingerprint_is_an_error(tmp_path):
    store = ShardStore(tmp_path)
    store.write(0, _table(1), "old")
    with pytest.raises(StaleShardError, match="source changed"):
        store.completed(0, "new")


def test_clean_temporaries(tmp_path):
    store = ShardStore(tmp_path)
    store.write(0, _table(1), "fp")
    (tmp_path / "part-00001.parquet.tmp-abc").write_bytes(b"half")
    assert store.clean_temporaries() == 1
    assert not list(tmp_path.glob("*.tmp-*"))
