"""The faiss serving path of the engine against exact search: ids, similarities, metadata, filters, staleness."""

import dataclasses
import json

import numpy as np
import pyarrow as pa
import pytest

from flywheel.config import ConfigError
from flywheel.retrieval import AnnConfig, EmbeddingSpace, IndexConfig, IndexError_, RetrievalEngine, serving
from flywheel.retrieval.config import FaissConfig
from flywheel.retrieval.engine import vectors_to_arrow
from flywheel.retrieval.knn import exact_knn
from flywheel.retrieval.serving import MANIFEST, serving_dir

DIM = 32
SPACE = EmbeddingSpace("test-model", DIM, text_queries=True)


def _clustered(n: int, seed: int, clusters: int = 12) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(clusters, DIM))
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.normal(size=(n, DIM))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _rows(v: np.ndarray, start: int = 0) -> pa.Table:
    idx = range(start, start + len(v))
    return pa.table(
        {
            "id": [f"s{i}" for i in idx],
            "vector": vectors_to_arrow(v),
            "curated": [i % 2 == 0 for i in idx],
            "caption": [f"caption {i}" for i in idx],
        }
    )


def _engine(tmp_path, nprobe: int, serving: str = "faiss") -> RetrievalEngine:
    ann = AnnConfig(
        min_rows=256,
        num_partitions=4,
        num_sub_vectors=4,
        serving=serving,
        faiss=FaissConfig(nlist=16, nprobe=nprobe),
    )
    return RetrievalEngine(tmp_path / "index", ann)


@pytest.fixture
def built(tmp_path):
    base = _clustered(1500, seed=0)
    engine = _engine(tmp_path, nprobe=16)  # every list probed: the faiss answer must be the exact one
    engine.add("caption", SPACE, _rows(base))
    name = engine.find("caption").name
    assert engine.build_ann_if_large(name)
    return engine, name, base


def test_served_search_is_exact_when_every_list_is_probed(built) -> None:
    engine, name, base = built
    served = engine.served(name)
    assert served is not None and served.rows == 1500 and served.nlist == 16
    queries = _clustered(20, seed=1)
    sims, idx = exact_knn(base, queries, 10)
    for q, want_sims, want_idx in zip(queries, sims, idx, strict=True):
        got = engine.search(name, q, k=10, columns=["id", "caption"])
        assert got.column("id").to_pylist() == [f"s{i}" for i in want_idx]
        assert got.column("caption").to_pylist() == [f"caption {i}" for i in want_idx]  # metadata by id
        assert np.allclose(got.column("similarity").to_numpy(), want_sims, atol=1e-5)
        assert got.schema.metadata[b"flywheel.space"] == b"test-model (dim 32)"
        ids_only = engine.search(name, q, k=10, columns=["id"])
        assert ids_only.column("id").to_pylist() == got.column("id").to_pylist()


def test_served_recall_with_few_lists_probed(built, tmp_path) -> None:
    engine, name, base = built
    engine.ann.faiss.nprobe = 4  # a quarter of the lists
    queries = _clustered(50, seed=2)
    _sims, idx = exact_knn(base, queries, 10)
    recall = [
        len({f"s{i}" for i in want} & set(engine.search(name, q, k=10, columns=["id"]).column("id").to_pylist())) / 10
        for q, want in zip(queries, idx, strict=True)
    ]
    assert np.mean(recall) >= 0.9


def test_filters_use_candidates_or_fall_back_to_lancedb(built) -> None:
    engine, name, base = built
    q = base[7]
    got = engine.search(name, q, k=5, where="curated = false", columns=["id", "curated"])
    _sims, idx = exact_knn(base[1::2], q[None], 5)  # odd rows are the non-curated ones
    assert got.column("id").to_pylist() == [f"s{2 * i + 1}" for i in idx[0]]
    assert not any(got.column("curated").to_pylist())
    # one row passes: fewer than k of the faiss candidates, so LanceDB's prefiltered search answers
    far = engine.search(name, q, k=3, where="id = 's1234'", columns=["id"])
    assert far.column("id").to_pylist() == ["s1234"]
    with pytest.raises(IndexError_, match="--where SQL"):
        engine.search(name, q, k=3, where="no_such_column = 1")
    with pytest.raises(IndexError_, match="width 8"):
        engine.search(name, np.ones(8, np.float32))


def test_a_write_invalidates_the_copy_until_it_is_rebuilt(built) -> None:
    engine, name, _base = built
    new = _clustered(10, seed=3)
    engine.add("caption", SPACE, _rows(new, start=5000))
    assert engine.served(name) is None  # stale copy never served: LanceDB answers and sees the new rows
    assert engine.search(name, new[0], k=1, columns=["id"]).column("id").to_pylist() == ["s5000"]
    assert engine.ensure_serving(name) and not engine.ensure_serving(name)
    reopened = _engine(engine.root.parent, nprobe=16)  # another process: loads the copy memory-mapped
    served = reopened.served(name)
    assert served is not None and served.rows == 1510
    assert reopened.search(name, new[0], k=1, columns=["id"]).column("id").to_pylist() == ["s5000"]
    # a metadata refresh changes no vector: the copy stays, and hits show the new metadata
    engine.update_metadata(name, pa.table({"id": ["s5000"], "curated": [True]}))
    hit = reopened.search(name, new[0], k=1, columns=["id", "curated"])
    assert reopened.served(name) is not None and hit.column("curated").to_pylist() == [True]


def _manifest(engine: RetrievalEngine, name: str) -> dict:
    return json.loads((serving_dir(engine.root, name) / MANIFEST).read_text())


def _assert_exact(engine: RetrievalEngine, name: str, ids: list[str], vectors: np.ndarray, seed: int) -> None:
    queries = _clustered(20, seed=seed)
    sims, idx = exact_knn(vectors, queries, 10)
    for q, want_sims, want_idx in zip(queries, sims, idx, strict=True):
        got = engine.search(name, q, k=10, columns=["id"])
        assert got.column("id").to_pylist() == [ids[i] for i in want_idx]
        assert np.allclose(got.column("similarity").to_numpy(), want_sims, atol=1e-5)


def test_written_rows_are_folded_into_the_copy_without_retraining(built) -> None:
    engine, name, base = built
    new = _clustered(100, seed=4)
    engine.add("caption", SPACE, _rows(new, start=5000))
    replaced = _clustered(20, seed=5)  # ids s0..s19 re-added with other vectors
    engine.add("caption", SPACE, _rows(replaced, start=0))
    assert engine.served(name) is None  # invalidated until the fold is published
    assert engine.ensure_serving(name) and not engine.ensure_serving(name)
    manifest = _manifest(engine, name)
    assert (manifest["folds"], manifest["trained_rows"], manifest["folded_rows"]) == (1, 1500, 120)
    assert (manifest["rows"], manifest["labels"], manifest["nlist"]) == (1600, 1620, 16)
    assert not list((serving_dir(engine.root, name) / "pending").glob("*.arrow"))  # the logs were consumed
    ids = [f"s{i}" for i in range(1500)] + [f"s{i}" for i in range(5000, 5100)]
    vectors = np.concatenate([replaced, base[20:], new])  # the table's rows now, in the order of `ids`
    _assert_exact(engine, name, ids, vectors, seed=6)  # every list probed: equal to exact search on all rows
    everything = engine.search(name, base[0], k=2000, columns=["id"]).column("id").to_pylist()
    assert len(everything) == len(set(everything)) == 1600  # a re-added id returns once, its old vector is gone
    hit = engine.search(name, replaced[3], k=1, columns=["id"])
    assert hit.column("id").to_pylist() == ["s3"] and hit.column("similarity")[0].as_py() == pytest.approx(1.0)
    # a second fold re-adds a folded id (its label from the first fold is removed too)
    again = _clustered(1, seed=7)
    engine.add("caption", SPACE, _rows(again, start=5000))
    assert engine.ensure_serving(name)
    manifest = _manifest(engine, name)
    assert (manifest["folds"], manifest["folded_rows"], manifest["rows"]) == (2, 121, 1600)
    ids[1500] = "s5000"
    vectors[1500] = again[0]
    _assert_exact(engine, name, ids, vectors, seed=8)
    reopened = _engine(engine.root.parent, nprobe=16)  # another process loads the folded copy
    assert reopened.search(name, again[0], k=1, columns=["id"]).column("id").to_pylist() == ["s5000"]


def test_a_write_that_stopped_part_way_is_folded_right(built) -> None:
    """A process killed after logging ids but before (or during) the table write: the fold is still exact."""
    engine, name, base = built
    logged = pa.array([f"s{i}" for i in range(5)] + ["s9999"], pa.string())  # s9999 never reached the table
    serving.note_write(engine.root, name, logged)  # the log and the stale base, then no LanceDB write
    assert engine.served(name) is None and engine.ensure_serving(name)
    manifest = _manifest(engine, name)
    assert (manifest["folds"], manifest["rows"], manifest["labels"]) == (1, 1500, 1505)
    _assert_exact(engine, name, [f"s{i}" for i in range(1500)], base, seed=15)
    # killed between the log and moving the manifest: the old copy is still served over an unchanged table
    log = serving_dir(engine.root, name) / "pending" / "leftover.arrow"
    with pa.OSFile(str(log), "wb") as sink, pa.ipc.new_file(sink, serving.ID_SCHEMA) as writer:
        writer.write_table(pa.table({"id": ["s7"]}, schema=serving.ID_SCHEMA))
    assert engine.served(name) is not None and not engine.ensure_serving(name)
    new = _clustered(3, seed=16)
    engine.add("caption", SPACE, _rows(new, start=5000))  # the next write folds the leftover log with its own
    assert engine.ensure_serving(name) and not log.exists()
    ids = [f"s{i}" for i in range(1500)] + ["s5000", "s5001", "s5002"]
    _assert_exact(engine, name, ids, np.concatenate([base, new]), seed=17)


def test_retrain_threshold_triggers_a_full_rebuild(built) -> None:
    engine, name, base = built
    engine.ann.faiss.retrain_after = 0.1  # 150 rows of the 1500 trained
    new = _clustered(100, seed=4)
    engine.add("caption", SPACE, _rows(new, start=5000))
    assert engine.ensure_serving(name) and _manifest(engine, name)["folds"] == 1
    more = _clustered(60, seed=9)  # 160 folded rows would pass 150: retrained over all 1660 rows
    engine.add("caption", SPACE, _rows(more, start=6000))
    assert engine.ensure_serving(name)
    manifest = _manifest(engine, name)
    assert (manifest["folds"], manifest["folded_rows"], manifest["trained_rows"], manifest["rows"]) == (
        0,
        0,
        1660,
        1660,
    )
    assert manifest["labels"] == 1660
    ids = [f"s{i}" for i in range(1500)] + [f"s{i}" for i in range(5000, 5100)] + [f"s{i}" for i in range(6000, 6060)]
    _assert_exact(engine, name, ids, np.concatenate([base, new, more]), seed=10)
    # a config the copy no longer fits (another index type) is rebuilt, not folded
    engine.ann.faiss.retrain_after = 0.5
    engine.ann.faiss.index_type = "IVF_SQ8"
    engine.add("caption", SPACE, _rows(_clustered(5, seed=11), start=7000))
    assert engine.ensure_serving(name)
    manifest = _manifest(engine, name)
    assert (manifest["index_type"], manifest["folds"], manifest["rows"]) == ("IVF_SQ8", 0, 1665)


def test_lance_serving_builds_no_copy_and_config_is_checked(tmp_path) -> None:
    engine = _engine(tmp_path, nprobe=4, serving="lance")
    engine.add("caption", SPACE, _rows(_clustered(400, seed=0)))
    name = engine.find("caption").name
    assert engine.build_ann_if_large(name) and engine.served(name) is None
    assert not engine.ensure_serving(name)
    path = tmp_path / "index.yaml"
    bad_keys = (("serving: hnsw", "serving"), ("faiss: {index_type: HNSW}", "index_type"))
    for bad, key in (*bad_keys, ("faiss: {retrain_after: -1}", "retrain_after"), ("faiss: {retrain: 1}", "retrain")):
        path.write_text(f"ann: {{{bad}}}\n")
        with pytest.raises(ConfigError, match=key):
            IndexConfig.load(path)
    faiss_cfg = FaissConfig(index_type="IVF_SQ8", nprobe=8, retrain_after=0.25)
    cfg = dataclasses.replace(IndexConfig(), ann=AnnConfig(faiss=faiss_cfg))
    path.write_text("ann: {faiss: {index_type: IVF_SQ8, nprobe: 8, retrain_after: 0.25}}\n")
    assert IndexConfig.load(path) == cfg
    assert IndexConfig().ann.serving == "faiss"  # the default is the path that meets the latency target


def test_sq8_index_read_into_ram(tmp_path) -> None:
    base = _clustered(600, seed=0)
    ann = AnnConfig(
        min_rows=256, num_partitions=4, num_sub_vectors=4, faiss=FaissConfig(index_type="IVF_SQ8", nlist=8, nprobe=8)
    )
    ann.faiss.mmap = False
    engine = RetrievalEngine(tmp_path / "index", ann)
    engine.add("caption", SPACE, _rows(base))
    name = engine.find("caption").name
    assert engine.build_ann_if_large(name)
    served = engine.served(name)
    assert served is not None and served.index_type == "IVF_SQ8"
    top = [engine.search(name, base[i], k=1, columns=["id"]).column("id")[0].as_py() for i in range(0, 600, 60)]
    assert top == [f"s{i}" for i in range(0, 600, 60)]  # every row is its own nearest neighbour
    more = _clustered(40, seed=14)
    engine.add("caption", SPACE, _rows(more, start=600))
    assert engine.ensure_serving(name) and _manifest(engine, name)["folds"] == 1  # folded into the SQ8 lists
    top = [engine.search(name, more[i], k=1, columns=["id"]).column("id")[0].as_py() for i in range(0, 40, 5)]
    assert top == [f"s{i}" for i in range(600, 640, 5)]


def test_fold_on_an_object_store(s3_bucket) -> None:
    """On s3 the stale copy is read from its objects, folded in memory and uploaded as a new build."""
    import uuid

    from flywheel.store import fs
    from flywheel.store.fs import ObjectPath

    root = ObjectPath(f"{s3_bucket}/{uuid.uuid4().hex[:8]}") / "index"
    ann = AnnConfig(min_rows=256, num_partitions=4, num_sub_vectors=4, faiss=FaissConfig(nlist=16, nprobe=16))
    engine = RetrievalEngine(root, ann)
    base, new = _clustered(600, seed=0), _clustered(30, seed=12)
    engine.add("caption", SPACE, _rows(base))
    name = engine.find("caption").name
    assert engine.build_ann_if_large(name)
    long_lived = RetrievalEngine(root, ann)
    assert long_lived.served(name) is not None  # holds the first copy, asks nothing while the fold runs
    engine.add("caption", SPACE, _rows(new, start=0))  # s0..s29 replaced
    assert engine.served(name) is None and engine.ensure_serving(name)
    manifest = _manifest(engine, name)
    assert (manifest["folds"], manifest["folded_rows"], manifest["rows"]) == (1, 30, 600)
    builds = [p.name for p in serving_dir(root, name).glob("build-*")]
    assert builds == [manifest["build"]]  # the old build's objects are gone
    reader = RetrievalEngine(root, ann)  # a fresh reader: the folded copy from the objects
    ids = [f"s{i}" for i in range(600)]
    _assert_exact(reader, name, ids, np.concatenate([new, base[30:]]), seed=13)
    # the new manifest's stamp differs from the one it replaced, even within the second (S3's resolution)
    _assert_exact(long_lived, name, ids, np.concatenate([new, base[30:]]), seed=13)
    fs.rmtree(root.parent)
