"""The LanceDB engine for real: space metadata, filtered search, incremental adds, ANN build; faiss helpers."""

import numpy as np
import pyarrow as pa
import pytest

from flywheel.config import ConfigError
from flywheel.retrieval import AnnConfig, EmbeddingSpace, IndexConfig, IndexError_, RetrievalEngine
from flywheel.retrieval.engine import table_vectors, vectors_to_arrow
from flywheel.retrieval.knn import exact_knn, greedy_dedup, kmeans

SPACE = EmbeddingSpace("test-model", 16, text_queries=True)


def _clustered(n: int, dim: int = 16, clusters: int = 8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim))
    x = centres[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _rows(v: np.ndarray, start: int = 0) -> pa.Table:
    n = len(v)
    return pa.table(
        {
            "id": [f"s{i}" for i in range(start, start + n)],
            "vector": vectors_to_arrow(v),
            "curated": [i % 2 == 0 for i in range(start, start + n)],
            "caption": [f"caption {i}" for i in range(start, start + n)],
        }
    )


def test_search_records_space_filters_and_matches_exact(tmp_path):
    v = _clustered(400)
    engine = RetrievalEngine(
        tmp_path / "index", AnnConfig(min_rows=300, num_partitions=4, num_sub_vectors=4, nprobes=4, refine_factor=20)
    )
    engine.add("caption", SPACE, _rows(v))
    info = engine.find("caption", text_queries=True)
    assert info.space == SPACE and info.rows == 400 and not info.ann
    got = engine.search(info.name, v[7], k=5, where="curated = false", columns=["id", "curated"])
    assert got.schema.metadata[b"flywheel.space"] == b"test-model (dim 16)"
    assert not any(got.column("curated").to_pylist())
    sims, idx = exact_knn(v[1::2], v[7:8], 5)  # odd rows are the non-curated ones
    assert got.column("id").to_pylist() == [f"s{2 * i + 1}" for i in idx[0]]
    assert np.allclose(got.column("similarity").to_numpy(), sims[0], atol=1e-4)
    # incremental add, then the ANN index; with refine the top hit is still the query itself
    engine.add("caption", SPACE, _rows(_clustered(100, seed=1), start=400))
    assert engine.existing_ids("caption", SPACE) == {f"s{i}" for i in range(500)}
    assert engine.build_ann_if_large(info.name)
    assert engine.info(info.name).ann
    top = engine.search(info.name, v[3], k=1)
    assert top.column("id").to_pylist() == ["s3"] and top.column("similarity")[0].as_py() > 0.99
    ids, vecs = table_vectors(engine, info.name, ids=["s3", "s5"])
    assert sorted(ids) == ["s3", "s5"] and vecs.shape == (2, 16)


def test_wrong_width_and_missing_tables_are_clear(tmp_path):
    engine = RetrievalEngine(tmp_path / "index")
    with pytest.raises(IndexError_, match="flywheel index"):
        engine.find("image")
    engine.add("image", SPACE, _rows(_clustered(10)))
    with pytest.raises(IndexError_, match="width 8"):
        engine.search(engine.find("image").name, np.ones(8, np.float32))
    with pytest.raises(IndexError_, match="do not fit"):
        engine.add("image", EmbeddingSpace("other", 32, False), _rows(_clustered(3)))


def test_metadata_refresh_keeps_vectors(tmp_path):
    engine = RetrievalEngine(tmp_path / "index")
    engine.add("caption", SPACE, _rows(_clustered(20)))
    name = engine.find("caption").name
    engine.update_metadata(name, pa.table({"id": ["s0"], "curated": [False]}))
    row = engine.search(name, engine.vector_of(name, "s0"), k=1)
    assert row.column("id")[0].as_py() == "s0" and row.column("curated")[0].as_py() is False


def test_faiss_dedup_and_kmeans():
    v = _clustered(200, clusters=4)
    dup = np.vstack([v[:10], v[:10]])  # every row twice
    keep = greedy_dedup(dup, 0.999)
    assert keep.tolist() == list(range(10))
    keep = greedy_dedup(v[:10], 0.999, against=v[:5])
    assert keep.tolist() == [5, 6, 7, 8, 9]
    centroids, assign = kmeans(v, 4)
    assert centroids.shape == (4, 16) and len(np.unique(assign)) == 4


def test_index_config_is_strict(tmp_path):
    path = tmp_path / "index.yaml"
    path.write_text("ann: {min_rows: 1000, nprobe: 3}\n")
    with pytest.raises(ConfigError, match="nprobe"):
        IndexConfig.load(path)
    path.write_text("ann: {index_type: HNSW}\n")
    with pytest.raises(ConfigError, match="index_type"):
        IndexConfig.load(path)
