"""The faiss serving path of the engine against exact search: ids, similarities, metadata, filters, staleness."""

import dataclasses

import numpy as np
import pyarrow as pa
import pytest

from flywheel.config import ConfigError
from flywheel.retrieval import AnnConfig, EmbeddingSpace, IndexConfig, IndexError_, RetrievalEngine
from flywheel.retrieval.config import FaissConfig
from flywheel.retrieval.engine import vectors_to_arrow
from flywheel.retrieval.knn import exact_knn

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


def test_lance_serving_builds_no_copy_and_config_is_checked(tmp_path) -> None:
    engine = _engine(tmp_path, nprobe=4, serving="lance")
    engine.add("caption", SPACE, _rows(_clustered(400, seed=0)))
    name = engine.find("caption").name
    assert engine.build_ann_if_large(name) and engine.served(name) is None
    assert not engine.ensure_serving(name)
    path = tmp_path / "index.yaml"
    for bad, key in (("serving: hnsw", "serving"), ("faiss: {index_type: HNSW}", "index_type")):
        path.write_text(f"ann: {{{bad}}}\n")
        with pytest.raises(ConfigError, match=key):
            IndexConfig.load(path)
    cfg = dataclasses.replace(IndexConfig(), ann=AnnConfig(faiss=FaissConfig(index_type="IVF_SQ8", nprobe=8)))
    path.write_text("ann: {faiss: {index_type: IVF_SQ8, nprobe: 8}}\n")
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
