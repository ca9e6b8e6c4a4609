"""Two index writers at once (two `flywheel index` runs) must not store any id twice."""

import multiprocessing as mp

import numpy as np
import pyarrow as pa

from flywheel.retrieval import EmbeddingSpace, RetrievalEngine
from flywheel.retrieval.engine import vectors_to_arrow

SPACE = EmbeddingSpace("test-model", 8, text_queries=True)


def _rows(start: int, n: int) -> pa.Table:
    v = np.random.default_rng(start).normal(size=(n, 8)).astype(np.float32)
    return pa.table({"id": [f"s{i}" for i in range(start, start + n)], "vector": vectors_to_arrow(v)})


def _writer(root: str, barrier) -> None:
    engine = RetrievalEngine(root)
    barrier.wait()
    for start in (0, 30, 60):  # overlapping chunks: ids 0..99, each written by both processes
        engine.add("image", SPACE, _rows(start, 40))


def test_concurrent_writers_store_each_id_once(tmp_path):
    ctx = mp.get_context("spawn")  # LanceDB's runtime must not be forked
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path / "index"), barrier)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    engine = RetrievalEngine(tmp_path / "index")
    table = engine.db.open_table(engine.table_names()[0])
    ids = table.to_arrow().column("id").to_pylist()
    assert len(ids) == len(set(ids)) == 100


def test_re_adding_rows_updates_them_in_place(tmp_path):
    engine = RetrievalEngine(tmp_path / "index")
    engine.add("image", SPACE, _rows(0, 10))
    engine.add("image", SPACE, _rows(5, 10))
    assert engine.info(engine.table_names()[0]).rows == 15
