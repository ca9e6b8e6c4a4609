"""The faiss index that serves single queries of a large LanceDB table (`ann.serving: faiss`).

LanceDB stays the store of record (vectors, metadata, filters); this is a read-side copy of one table's
vectors in a faiss IVF index, kept under ROOT/_faiss/<table>/ beside the table:

    manifest.json          what was built (table, space, rows, index type, nlist) and which build folder
    build-<hex>/index.faiss   the IVF index; memory-mapped by default (`faiss.mmap`), so opening costs nothing
    build-<hex>/ids.arrow     the table's id of each faiss label (Arrow IPC, memory-mapped)

The manifest is written last and atomically, so a reader sees a whole build or none. Any write of vectors
(RetrievalEngine.add) removes the manifest first: a stale copy is never served, searches go to LanceDB
until `flywheel index` builds a new one. Metadata refreshes do not touch vectors and keep the copy valid.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import lancedb
import numpy as np
import pyarrow as pa

from flywheel.retrieval.config import FaissConfig
from flywheel.retrieval.space import EmbeddingSpace
from flywheel.store import fs as storage
from flywheel.store.fs import ObjectPath
from flywheel.store.shards import write_json_atomic

MANIFEST = "manifest.json"
READ_BATCH_ROWS = 65_536
# k-means trains on this many rows per list (faiss warns below 39): enough for balanced lists, and the
# training cost (rows x nlist x dim) stays seconds at 1M rows on 2 cores.
TRAIN_ROWS_PER_LIST = 64


@dataclass(frozen=True)
class ServingIndex:
    """A loaded faiss copy of a table; `stamp` identifies the manifest it was loaded from."""

    index: faiss.Index
    ids: pa.Array
    field: str
    space: EmbeddingSpace
    rows: int
    index_type: str
    nlist: int
    stamp: tuple[int, int]


def serving_dir(root: Path, table: str) -> Path:
    return root / "_faiss" / table


def default_nlist(rows: int) -> int:
    """sqrt(rows) lists (about 1000 vectors each at 1M), at least 16, at most 4096, never more than rows."""
    return max(1, min(rows, max(16, min(4096, int(rows**0.5)))))


def _stamp(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_mtime_ns, st.st_ino


def invalidate(root: Path, table: str) -> None:
    """Drop the manifest so no reader serves vectors that no longer match the table."""
    (serving_dir(root, table) / MANIFEST).unlink(missing_ok=True)


def is_built(root: Path, table: str) -> bool:
    return (serving_dir(root, table) / MANIFEST).is_file()


def _new_index(cfg: FaissConfig, dim: int, nlist: int) -> faiss.Index:
    quantizer = faiss.IndexFlatIP(dim)
    if cfg.index_type == "IVF_FLAT":
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
    else:  # IVF_SQ8, the only other type FaissConfig.check admits
        index = faiss.IndexIVFScalarQuantizer(
            quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
    index.cp.max_points_per_centroid = TRAIN_ROWS_PER_LIST
    return index


def _batches(table: lancedb.table.Table, dim: int) -> Iterator[tuple[pa.Array, np.ndarray]]:
    """(ids, unit vectors) in batches of READ_BATCH_ROWS, straight from the LanceDB table."""
    rows = table.count_rows()
    reader = table.search().select(["id", "vector"]).limit(max(1, rows)).to_batches(READ_BATCH_ROWS)
    for batch in reader:
        if batch.num_rows == 0:
            continue
        flat = batch.column("vector").flatten().to_numpy(zero_copy_only=False)
        vectors = np.array(flat, dtype=np.float32).reshape(-1, dim)  # a copy: normalize_L2 works in place
        faiss.normalize_L2(vectors)  # cosine = inner product of unit vectors, as LanceDB's cosine metric
        yield batch.column("id"), vectors


def build(
    root: Path, table_name: str, table: lancedb.table.Table, field: str, space: EmbeddingSpace, cfg: FaissConfig
) -> dict[str, object]:
    """Build the faiss copy of `table` (a LanceDB table) and publish it; return the manifest.

    Two passes over the table in batches (one to sample training rows evenly, one to add every row), so
    memory is the index itself plus one batch, not the table twice. The caller holds the write lock, so no
    vector is written between the read and the publication.
    """
    rows = int(table.count_rows())
    if rows == 0:
        raise ValueError(f"table {table_name} is empty; nothing to index")
    nlist = cfg.nlist or default_nlist(rows)
    nlist = min(nlist, rows)
    index = _new_index(cfg, space.dim, nlist)
    stride = max(1, rows // (nlist * TRAIN_ROWS_PER_LIST))
    sample = np.concatenate([v[::stride] for _ids, v in _batches(table, space.dim)])
    index.train(sample)
    del sample
    id_chunks: list[pa.Array] = []
    for ids, vectors in _batches(table, space.dim):
        index.add(vectors)
        id_chunks.append(ids)
    ids_all = pa.chunked_array(id_chunks, pa.string()).combine_chunks()
    folder = serving_dir(root, table_name)
    build_name = f"build-{uuid.uuid4().hex[:12]}"
    (folder / build_name).mkdir(parents=True)
    if isinstance(folder, ObjectPath):  # an object store: the index's bytes are uploaded, not written in place
        (folder / build_name / "index.faiss").write_bytes(faiss.serialize_index(index).tobytes())
    else:
        faiss.write_index(index, str(folder / build_name / "index.faiss"))
    ids_sink = (folder / build_name / "ids.arrow").open("wb")
    with ids_sink as sink, pa.ipc.new_file(sink, pa.schema([("id", pa.string())])) as writer:
        writer.write_table(pa.table({"id": ids_all}))
    manifest: dict[str, object] = {
        "table": table_name,
        "build": build_name,
        "field": field,
        "model": space.model,
        "dim": space.dim,
        "text_queries": space.text_queries,
        "rows": int(index.ntotal),
        "index_type": cfg.index_type,
        "nlist": nlist,
    }
    write_json_atomic(folder / MANIFEST, manifest)
    for old in folder.glob("build-*"):  # a reader with an old build mapped keeps it until it closes
        if old.name != build_name:
            storage.rmtree(old)
    return manifest


def load(root: Path, table: str, cached: ServingIndex | None, *, mmap: bool = True) -> ServingIndex | None:
    """The table's faiss copy, or None when there is none (never built, or invalidated by a write).

    One stat per call: `cached` is returned while its manifest is the current one, so a long-running
    process picks up a rebuild and drops an invalidated copy on its next query.
    """
    path = serving_dir(root, table) / MANIFEST
    stamp = _stamp(path)
    if stamp is None:
        return None
    if cached is not None and cached.stamp == stamp:
        return cached
    try:
        meta = json.loads(path.read_text())
    except FileNotFoundError:  # removed between the stat and the read: a write is under way
        return None
    folder = serving_dir(root, table) / str(meta["build"])
    if isinstance(folder, ObjectPath):  # no memory map of an object: the index is read into memory
        index = faiss.deserialize_index(np.frombuffer((folder / "index.faiss").read_bytes(), dtype=np.uint8))
        ids_file = pa.BufferReader((folder / "ids.arrow").read_bytes())
    else:
        index = faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_MMAP if mmap else 0)
        ids_file = pa.memory_map(str(folder / "ids.arrow"))
    ids = pa.ipc.open_file(ids_file).read_all().column("id").combine_chunks()
    space = EmbeddingSpace(str(meta["model"]), int(meta["dim"]), bool(meta["text_queries"]))
    return ServingIndex(
        index, ids, str(meta["field"]), space, int(meta["rows"]), str(meta["index_type"]), int(meta["nlist"]), stamp
    )


def search(serving: ServingIndex, query: np.ndarray, n: int, nprobe: int) -> tuple[np.ndarray, pa.Array]:
    """The `n` nearest rows of one query: (cosine similarities, ids), best first."""
    q = np.array(query, dtype=np.float32).reshape(1, -1)
    faiss.normalize_L2(q)
    sims, labels = serving.index.search(q, min(n, serving.rows), params=faiss.SearchParametersIVF(nprobe=nprobe))
    ok = labels[0] >= 0  # fewer than n rows in the probed lists
    return sims[0][ok], serving.ids.take(pa.array(labels[0][ok]))
