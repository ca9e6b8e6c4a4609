"""The shard store and the workspace on an object store (moto's S3 server on the loopback)."""

from __future__ import annotations

import pickle
import re
import uuid

import pytest

from flywheel.store import fs
from flywheel.store.fs import ObjectPath, StorageError
from flywheel.store.shards import CorruptShardError, ShardStore, StaleShardError
from flywheel.workspace import Workspace
from tests.flywheel.test_store import _table


@pytest.fixture
def prefix(s3_bucket: str) -> ObjectPath:
    return ObjectPath(f"{s3_bucket}/{uuid.uuid4().hex[:8]}")


def test_object_path_is_a_pathlike_key(prefix):
    p = prefix / "pool" / "_markers" / ".." / "part-00001.parquet"
    assert str(p) == f"{prefix}/pool/part-00001.parquet"
    assert p.name == "part-00001.parquet" and p.stem == "part-00001" and p.suffix == ".parquet"
    assert p.parent == prefix / "pool" and p.with_name("x.json") == prefix / "pool" / "x.json"
    assert pickle.loads(pickle.dumps(p)) == p  # Ray tasks receive the URI and rebuild the client
    assert fs.storage_path(str(p)) == p and fs.relpath(p, prefix / "curated" / "r") == "../../pool/part-00001.parquet"
    assert not p.exists() and not p.parent.is_dir()
    p.write_text("hello")
    assert p.is_file() and p.read_text() == "hello" and p.stat().st_size == 5 and p.parent.is_dir()
    assert [q.name for q in p.parent.glob("part-*.parquet")] == ["part-00001.parquet"]
    p.rename(p.with_name("moved"))
    assert not p.exists() and p.with_name("moved").read_text() == "hello"
    fs.rmtree(prefix)
    assert not prefix.exists()


def test_shard_round_trip_markers_and_manifest(prefix):
    store = ShardStore(prefix / "pool")
    store.write(0, _table(3), "fp0")
    store.write(1, _table(5), "fp1")
    assert store.completed(0, "fp0").rows == 3
    manifest = store.write_manifest()
    assert manifest["rows"] == 8 and [s["shard"] for s in manifest["shards"]] == [
        "part-00000.parquet",
        "part-00001.parquet",
    ]
    assert store.read_manifest()["rows"] == 8
    assert fs.read_table(store.shard_path(1)).column("x").to_pylist() == [0, 1, 2, 3, 4]
    assert [i.rows for i in store.verify()] == [3, 5]
    # Nothing but the shards and the bookkeeping: no temporary names on an object store.
    assert sorted(p.name for p in (prefix / "pool").iterdir()) == [
        "_manifest.json",
        "_markers",
        "part-00000.parquet",
        "part-00001.parquet",
    ]


def test_resume_semantics_on_s3(prefix):
    """Same rules as on disk: no marker -> redo; changed bytes -> damaged; other input -> error."""
    store = ShardStore(prefix / "pool")
    store.write(0, _table(3), "fp")
    store.marker_path(0).unlink()
    assert store.completed(0, "fp") is None
    store.write(0, _table(3), "fp")
    store.shard_path(0).write_bytes(store.shard_path(0).read_bytes() + b"junk")
    assert store.completed(0, "fp") is None and "truncated or rewritten" in store.damaged[0]
    with pytest.raises(CorruptShardError):
        store.verify()
    store.write(0, _table(3), "fp")
    with pytest.raises(StaleShardError):
        store.completed(0, "other")
    piece = store.write_piece(2, _table(2))
    assert piece.is_file() and store.clean_temporaries() == 1 and not piece.exists()


def test_workspace_on_s3_registers_sources(prefix):
    ws = Workspace.at(str(prefix))
    assert ws.root == prefix and ws.pool_dir == prefix / "pool"
    assert ws.source_offset("folder:a", 2, [3, 4]) == 0 and ws.source_offset("folder:b", 1, [1]) == 2
    assert ws.planned_rows() == {0: 3, 1: 4, 2: 1}
    assert ws.curated_recipes() == []


def test_missing_bucket_and_credentials_are_one_line_user_errors(s3_bucket, monkeypatch):
    with pytest.raises(StorageError, match="bucket 'no-such-bucket' does not exist"):
        Workspace.at("s3://no-such-bucket/ws")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")  # nor a credentials file of the machine's
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent")
    with pytest.raises(StorageError, match="no S3 credentials"):
        Workspace.at(f"{s3_bucket}/ws")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # discard port: nothing listens
    with pytest.raises(StorageError, match=re.escape("object store at http://127.0.0.1:9 failed")):
        Workspace.at(f"{s3_bucket}/ws")


def test_lancedb_index_and_faiss_serving_copy_on_s3(prefix):
    """The index on s3: LanceDB tables through storage_options, the faiss copy uploaded and read back."""
    from flywheel.retrieval import AnnConfig, RetrievalEngine
    from flywheel.retrieval.config import FaissConfig
    from flywheel.retrieval.knn import exact_knn
    from tests.flywheel.retrieval.test_serving import SPACE, _clustered, _rows

    ann = AnnConfig(min_rows=256, num_partitions=4, num_sub_vectors=4, faiss=FaissConfig(nlist=16, nprobe=16))
    engine = RetrievalEngine(prefix / "index", ann)
    base = _clustered(600, seed=0)
    engine.add("caption", SPACE, _rows(base))
    name = engine.find("caption").name
    assert engine.build_ann_if_large(name)
    assert (prefix / "index" / "_faiss" / name / "manifest.json").is_file()
    served = RetrievalEngine(prefix / "index", ann).served(name)  # a fresh reader: loaded from the objects
    assert served is not None and served.rows == 600
    query = _clustered(1, seed=1)[0]
    _sims, idx = exact_knn(base, query[None, :], 5)
    got = engine.search(name, query, k=5, columns=["id"]).column("id").to_pylist()
    assert got == [f"s{i}" for i in idx[0]]  # every list probed: the served answer is the exact one
