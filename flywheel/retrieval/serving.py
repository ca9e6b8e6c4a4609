"""The faiss index that serves single queries of a large LanceDB table (`ann.serving: faiss`).

LanceDB stays the store of record (vectors, metadata, filters); this is a read-side copy of one table's
vectors in a faiss IVF index, kept under ROOT/_faiss/<table>/ beside the table:

    manifest.json          what was built (table, space, rows, index type, nlist) and which build folder
    build-<hex>/index.faiss   the IVF index; memory-mapped by default (`faiss.mmap`), so opening costs nothing
    build-<hex>/ids.arrow     the table's id of each faiss label (Arrow IPC, memory-mapped)

The manifest is written last and atomically, so a reader sees a whole build or none. Any write of vectors
(RetrievalEngine.add, under the write lock) first logs the ids it writes (pending/<hex>.arrow), moves the
manifest to stale.json and removes it: a stale copy is never served, searches go to LanceDB until
`flywheel index` publishes a new one. That new copy is a fold when it can be (`fold`): the stale build is
read, the logged ids' old vectors are removed (`remove_ids`), their current vectors are read from the table
and added under new labels (`add_with_ids`) into the trained IVF lists, with no k-means; a full `build`
(which retrains) when the rows folded since the last training pass `retrain_after` x the trained rows, or the
copy no longer fits the config (dimension, model, index type, nlist). Labels are never reused: a removed
row's slot in ids.arrow is null, a re-added id gets a new label. Metadata refreshes do not touch vectors
and keep the copy valid.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import faiss
import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.retrieval.config import FaissConfig
from flywheel.retrieval.space import EmbeddingSpace
from flywheel.store import fs as storage
from flywheel.store.fs import ObjectPath
from flywheel.store.shards import write_json_atomic

MANIFEST = "manifest.json"
STALE = "stale.json"  # the manifest of the last copy, moved here by a write: the base a fold starts from
PENDING = "pending"  # ids written since that copy, one Arrow file per write
ID_SCHEMA = pa.schema([("id", pa.string())])
# ids per `id IN (...)` read of the rows to fold (the table has a BTree index on id)
FOLD_READ_IDS = 4096
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


def note_write(root: Path, table: str, ids: pa.Array | pa.ChunkedArray) -> None:
    """Called under the write lock before vectors of `ids` are written: log them for the next fold, and
    drop the manifest so no reader serves vectors that no longer match the table.

    The log is written first and the manifest moved to stale.json before it is removed, so a crash at any
    point leaves either the old copy served over an unchanged table, or a stale base plus every id written
    since (a logged id whose write never happened is folded with its unchanged vector: harmless).
    """
    folder = serving_dir(root, table)
    manifest, stale = folder / MANIFEST, folder / STALE
    if not manifest.is_file() and not stale.is_file():
        return  # no copy to fold into: the next build reads the whole table
    log = folder / PENDING / f"{uuid.uuid4().hex}.arrow"
    log.parent.mkdir(parents=True, exist_ok=True)
    _write_ids(log, ids)
    replaced = _stamp(manifest)
    if replaced is not None:
        # the stamp readers may hold: the next manifest must not carry the same one (see _publish)
        write_json_atomic(stale, {**json.loads(manifest.read_text()), "replaced_stamp": list(replaced)})
        manifest.unlink(missing_ok=True)


def _write_ids(path: Path, ids: pa.Array | pa.ChunkedArray) -> None:
    with path.open("wb") as sink, pa.ipc.new_file(sink, ID_SCHEMA) as writer:
        writer.write_table(pa.table({"id": ids}, schema=ID_SCHEMA))


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
    manifest: dict[str, object] = {
        "table": table_name,
        "field": field,
        "model": space.model,
        "dim": space.dim,
        "text_queries": space.text_queries,
        "index_type": cfg.index_type,
        "nlist": nlist,
        "trained_rows": int(index.ntotal),  # rows when the quantizer was trained: the base of `retrain_after`
        "folded_rows": 0,  # rows added by folds since then
        "folds": 0,
    }
    return _publish(serving_dir(root, table_name), index, ids_all, manifest, consumed=None)


def _publish(
    folder: Path, index: faiss.Index, ids: pa.Array, manifest: dict[str, object], consumed: list[Path] | None
) -> dict[str, object]:
    """Write a new build folder, then the manifest atomically (what readers see), then drop what it
    replaces: the old builds, stale.json and the pending logs it covers (`consumed`; all of them for a
    full build, which read the whole table under the write lock)."""
    build_name = f"build-{uuid.uuid4().hex[:12]}"
    (folder / build_name).mkdir(parents=True)
    if isinstance(folder, ObjectPath):  # an object store: the index's bytes are uploaded, not written in place
        (folder / build_name / "index.faiss").write_bytes(faiss.serialize_index(index).tobytes())
    else:
        faiss.write_index(index, str(folder / build_name / "index.faiss"))
    _write_ids(folder / build_name / "ids.arrow", ids)
    manifest = {**manifest, "build": build_name, "rows": int(index.ntotal), "labels": len(ids)}
    manifest.pop("replaced_stamp", None)
    path = folder / MANIFEST
    held = {_stamp(path)}  # readers tell manifests apart by stamp: a local file's inode changes on each
    if (folder / STALE).is_file():  # write, but an object's stamp is its modification time, in seconds on S3
        held.add(tuple(json.loads((folder / STALE).read_text()).get("replaced_stamp", ())))
    write_json_atomic(path, manifest)
    while _stamp(path) in held:  # a fold within the second of the manifest it replaces: write it again
        time.sleep(0.25)
        write_json_atomic(path, manifest)
    (folder / STALE).unlink(missing_ok=True)
    for log in consumed if consumed is not None else list((folder / PENDING).glob("*.arrow")):
        log.unlink(missing_ok=True)
    for old in folder.glob("build-*"):  # a reader with an old build mapped keeps it until it closes
        if old.name != build_name:
            storage.rmtree(old)
    return manifest


def fold(
    root: Path, table_name: str, table: lancedb.table.Table, field: str, space: EmbeddingSpace, cfg: FaissConfig
) -> dict[str, object] | None:
    """Fold the rows written since the stale copy into it, without retraining; return the new manifest,
    or None when a full `build` is needed (no stale base, the copy does not fit the config or space, or the
    folded rows would pass `cfg.retrain_after` x the trained rows, when the lists no longer fit the data).

    The caller holds the write lock. The base index is read into memory (it is modified), the logged ids'
    old labels removed, their current vectors read from the table (the store of record) and added under
    new labels; a logged id no longer in the table just loses its vector.
    """
    folder = serving_dir(root, table_name)
    stale = folder / STALE
    if not stale.is_file():
        return None
    base = json.loads(stale.read_text())
    fits = (
        base.get("field") == field
        and base.get("model") == space.model
        and int(base.get("dim", -1)) == space.dim
        and base.get("index_type") == cfg.index_type
        and (cfg.nlist is None or min(cfg.nlist, int(base.get("trained_rows", 0))) == int(base.get("nlist", -1)))
        and "trained_rows" in base  # a copy from before folds: rebuilt once
        and (folder / str(base.get("build")) / "index.faiss").is_file()
    )
    if not fits:
        return None
    logs = sorted((folder / PENDING).glob("*.arrow"))
    written = pc.unique(pa.chunked_array([_read_ids(log) for log in logs] or [pa.array([], pa.string())], pa.string()))
    folded = int(base["folded_rows"]) + len(written)
    if folded > cfg.retrain_after * int(base["trained_rows"]):
        return None
    index = _read_index(folder / str(base["build"]), mmap=False)
    ids = _read_ids(folder / str(base["build"]) / "ids.arrow")
    old = pc.index_in(written, value_set=ids).drop_null().to_numpy(zero_copy_only=False).astype(np.int64)
    if len(old):
        index.remove_ids(faiss.IDSelectorBatch(old))
        dropped = np.zeros(len(ids), dtype=bool)
        dropped[old] = True
        ids = pc.if_else(pa.array(dropped), pa.scalar(None, pa.string()), ids)  # labels are never reused
    new_ids, vectors = _rows_of(table, written, space.dim)
    index.add_with_ids(vectors, np.arange(len(ids), len(ids) + len(new_ids), dtype=np.int64))
    ids = pa.concat_arrays([ids, new_ids])
    manifest = {**base, "folded_rows": folded, "folds": int(base["folds"]) + 1}
    return _publish(folder, index, ids, manifest, consumed=logs)


def _read_ids(path: Path) -> pa.Array:
    source = path.read_bytes() if isinstance(path, ObjectPath) else pa.memory_map(str(path))
    reader = pa.ipc.open_file(pa.BufferReader(source) if isinstance(source, bytes) else source)
    return reader.read_all().column("id").combine_chunks()


def _read_index(folder: Path, *, mmap: bool) -> faiss.Index:
    if isinstance(folder, ObjectPath):  # no memory map of an object: the index is read into memory
        return faiss.deserialize_index(np.frombuffer((folder / "index.faiss").read_bytes(), dtype=np.uint8))
    return faiss.read_index(str(folder / "index.faiss"), faiss.IO_FLAG_MMAP if mmap else 0)


def _rows_of(table: lancedb.table.Table, ids: pa.Array, dim: int) -> tuple[pa.Array, np.ndarray]:
    """The current (ids, unit vectors) of the rows of `ids` still in the table, by the id index."""
    got_ids: list[pa.Array] = []
    got_vectors: list[np.ndarray] = [np.zeros((0, dim), dtype=np.float32)]
    for start in range(0, len(ids), FOLD_READ_IDS):
        chunk = ids.slice(start, FOLD_READ_IDS).to_pylist()
        sql = "id IN (" + ", ".join("'" + i.replace("'", "''") + "'" for i in chunk) + ")"
        got = table.search().where(sql).select(["id", "vector"]).limit(len(chunk)).to_arrow()
        if got.num_rows == 0:
            continue
        flat = got.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False)
        got_vectors.append(np.array(flat, dtype=np.float32).reshape(-1, dim))
        got_ids.append(got.column("id").combine_chunks())
    vectors = np.ascontiguousarray(np.concatenate(got_vectors))
    faiss.normalize_L2(vectors)
    return pa.chunked_array(got_ids, pa.string()).combine_chunks(), vectors


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
    index = _read_index(folder, mmap=mmap)
    ids = _read_ids(folder / "ids.arrow")
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
