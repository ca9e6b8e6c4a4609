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
    with pytest.raises(StaleShardError, match=r"source changed"):
        store.completed(0, "new")


def test_clean_temporaries(tmp_path):
    store = ShardStore(tmp_path)
    store.write(0, _table(1), "fp")
    (tmp_path / "part-00001.parquet.tmp-abc").write_bytes(b"half")
    assert store.clean_temporaries() == 1
    assert not list(tmp_path.glob("*.tmp-*"))


def _flip(path, offset: int, n: int = 64) -> None:
    """Flip `n` bytes in place (same size: only a checksum can tell)."""
    data = bytearray(path.read_bytes())
    for i in range(offset, min(offset + n, len(data))):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_bit_flipped_or_truncated_shard_is_not_complete_and_is_named(tmp_path):
    from flywheel.store.shards import CorruptShardError

    store = ShardStore(tmp_path)
    store.write(0, _table(50), "fp")
    store.write(1, _table(50), "fp")
    _flip(store.shard_path(0), 40)
    assert store.completed(0, "fp") is None
    assert "part-00000.parquet" in store.damaged[0] and "sha256" in store.damaged[0]
    with pytest.raises(CorruptShardError, match=r"part-00000\.parquet"):
        store.verify()
    store.write(0, _table(50), "fp")  # rewritten: complete again
    path = store.shard_path(1)
    path.write_bytes(path.read_bytes()[:-100])
    assert store.completed(1, "fp") is None and "truncated" in store.damaged[1]
    with pytest.raises(CorruptShardError, match=r"part-00001\.parquet"):
        store.verify()


def test_meta_root_keeps_bookkeeping_out_of_the_shard_folder(tmp_path):
    store = ShardStore(tmp_path / "data", meta_root=tmp_path / "meta")
    store.write(0, _table(2), "fp")
    store.write_manifest()
    assert [p.name for p in (tmp_path / "data").iterdir()] == ["part-00000.parquet"]
    assert (tmp_path / "meta" / "_manifest.json").is_file() and store.completed(0, "fp").rows == 2


def test_verify_hashes_a_shard_again_only_when_its_file_changed(tmp_path, monkeypatch):
    """Re-selection costs metadata: unchanged shards are trusted from the last hash; --rehash hashes all."""
    import os

    from flywheel.store import shards
    from flywheel.store.shards import CorruptShardError

    store = ShardStore(tmp_path)
    store.write(0, _table(50), "fp")
    store.write(1, _table(50), "fp")
    hashed: list[str] = []
    real = shards.file_sha256
    monkeypatch.setattr(shards, "file_sha256", lambda p: hashed.append(p.name) or real(p))
    store.verify()
    assert sorted(hashed) == ["part-00000.parquet", "part-00001.parquet"]
    hashed.clear()
    store.verify()
    assert hashed == []  # nothing changed: no pool byte read
    _flip(store.shard_path(1), 40)  # a rewrite changes the modification time: hashed again, and caught
    with pytest.raises(CorruptShardError, match=r"part-00001\.parquet"):
        store.verify()
    assert hashed == ["part-00001.parquet"]
    store.write(1, _table(50), "fp")
    store.verify()
    st = store.shard_path(0).stat()
    _flip(store.shard_path(0), 40)
    os.utime(store.shard_path(0), ns=(st.st_atime_ns, st.st_mtime_ns))  # damage that leaves `stat` as it was
    store.verify()  # trusted from the cache, as documented
    with pytest.raises(CorruptShardError, match=r"part-00000\.parquet"):
        store.verify(rehash=True)
