"""Image bytes stored once: selections and captioned copies reference the pool row that holds them.

The pool is the one copy of every image (for Parquet and WebDataset sources too, since a pool shard keeps
the bytes it read). A curated shard keeps every column of its kept rows except the byte columns, plus
`pool_row` (the row's position in its pool shard, `partition`); the shard's schema metadata names the
bytes shard relative to itself (`flywheel.images_from`). So `flywheel select` reads and writes metadata
only, a re-selection of a large pool costs seconds instead of a copy of every kept image, and a curated
folder moved together with its pool still resolves. Readers that need pixels (the trainer, the
captioners, `flywheel export`) call `attach_bytes` / `BytesReader`; other readers (DuckDB, Polars,
`datasets`) see the metadata, and `flywheel export` writes self-contained shards for those that need files.

Every fetched row is checked against the referencing row's `id`: a pool re-scored under different rows
since the selection is a clear error, never the wrong image.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.errors import RunFailed
from flywheel.schema import Column
from flywheel.store.fs import parquet_file, read_schema, read_table, relpath, storage_path

BYTE_COLUMNS = ("image", "source_image")
# Per-row payloads a selection leaves in the pool beside the bytes: deciding and training never read them, and a
# copy would cost what the bytes did (image_embedding: 1280 float32 = 5 KB a row, about 5 GB at 1M kept rows).
# Semantic dedup and the index read them from the pool; a reader that wants one joins on (partition, pool_row).
POOL_ONLY_COLUMNS = (*BYTE_COLUMNS, "image_embedding")
IMAGES_FROM = b"flywheel.images_from"
POOL_ROW = Column(
    "pool_row",
    pa.int32(),
    "",
    "Row of this sample in pool shard `partition`, where its image bytes are stored (selections hold no bytes).",
)
IMAGES_SHARD = Column(
    "images_shard",
    pa.string(),
    "",
    "Pool shard holding this row's image bytes (at row `pool_row`), relative to the folder of the shard that "
    "lists the row: set on rows gathered from several pools (track data and its mix copies).",
)


class StaleReferenceError(RunFailed):
    """A referenced pool row no longer holds the sample that was selected."""


def reference_form(table: pa.Table, rows: np.ndarray, bytes_shard: Path, out_dir: Path) -> pa.Table:
    """`table` (rows of `bytes_shard`, at positions `rows`) without its bytes, pointing at `bytes_shard`.

    A table that already carries `pool_row` (a derived copy of a selection, e.g. captioned rows) keeps it.
    """
    table = table.drop_columns([c for c in POOL_ONLY_COLUMNS if c in table.schema.names])
    if POOL_ROW.name not in table.schema.names:
        table = table.append_column(POOL_ROW.field(), pa.array(rows.astype(np.int32), pa.int32()))
    return with_source(table, bytes_shard, out_dir)


def row_references(table: pa.Table, files: Sequence[str], rows: Sequence[int], out_dir: Path) -> pa.Table:
    """`table` without its bytes, each row pointing at its own pool shard `files[i]` and row `rows[i]`.

    Track data gathers rows from the pool and from reservoirs (other workspaces' pools), so one shard-level
    `flywheel.images_from` cannot name them all; the per-row form keeps the bytes in their one copy all the same.
    """
    table = table.drop_columns(
        [c for c in (*POOL_ONLY_COLUMNS, POOL_ROW.name, IMAGES_SHARD.name) if c in table.schema.names]
    )
    shards = [relpath(storage_path(f), out_dir) for f in files]
    table = table.append_column(POOL_ROW.field(), pa.array(rows, pa.int32()))
    return table.append_column(IMAGES_SHARD.field(), pa.array(shards, pa.string()))


def rebase_references(table: pa.Table, from_dir: Path, to_dir: Path) -> pa.Table:
    """Per-row references of rows read from a shard in `from_dir`, made relative to `to_dir` (a copy's folder)."""
    if IMAGES_SHARD.name not in table.schema.names:
        return table
    values = table.column(IMAGES_SHARD.name).to_pylist()
    moved = {v: relpath(from_dir / v, to_dir) for v in set(values) if v is not None}
    at = table.schema.get_field_index(IMAGES_SHARD.name)
    return table.set_column(at, IMAGES_SHARD.field(), pa.array([moved.get(v) for v in values], pa.string()))


def holds_bytes(shard: Path, schema: pa.Schema) -> bool:
    """False when `shard`'s rows reference pool rows for their bytes (shard-level or per-row form)."""
    return bytes_source(shard, schema) is None and IMAGES_SHARD.name not in schema.names


def with_source(table: pa.Table, bytes_shard: Path, out_dir: Path) -> pa.Table:
    """Record in the schema metadata where the bytes of `table`'s rows are, relative to `out_dir`."""
    rel = relpath(bytes_shard, out_dir)
    return table.replace_schema_metadata({**(table.schema.metadata or {}), IMAGES_FROM: rel.encode()})


def bytes_source(shard: Path, schema: pa.Schema | None = None) -> Path | None:
    """The shard holding the bytes of `shard`'s rows, or None when `shard` holds its own bytes."""
    meta = (schema if schema is not None else read_schema(shard)).metadata or {}
    rel = meta.get(IMAGES_FROM)
    return None if rel is None else (shard.parent / rel.decode()).resolve()


class BytesReader:
    """Byte columns of referenced pool rows, read by row group through a small LRU cache."""

    def __init__(self, cache_size: int = 4) -> None:
        self.cache_size = cache_size
        self._files: dict[Path, tuple[pq.ParquetFile, np.ndarray, list[str]]] = {}
        self._cache: OrderedDict[tuple[Path, int], dict[str, list[object]]] = OrderedDict()

    def _file(self, path: Path) -> tuple[pq.ParquetFile, np.ndarray, list[str]]:
        if path not in self._files:
            if not path.is_file():
                raise StaleReferenceError(
                    f"pool shard {path} holding the selected images is missing: re-score the source and re-select"
                )
            pf = parquet_file(path)
            starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
            cols = ["id", *(c for c in BYTE_COLUMNS if c in pf.schema_arrow.names)]
            self._files[path] = (pf, starts, cols)
        return self._files[path]

    def row(self, path: Path, row: int, sample_id: str) -> dict[str, object]:
        """The byte columns of row `row` of `path`, which must be sample `sample_id`."""
        pf, starts, cols = self._file(path)
        if not 0 <= row < int(starts[-1]):
            raise StaleReferenceError(f"{path} has no row {row} (sample {sample_id}): re-run `flywheel select`")
        group = int(np.searchsorted(starts, row, side="right") - 1)
        key = (path, group)
        if key not in self._cache:
            self._cache[key] = pf.read_row_group(group, columns=cols).to_pydict()
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        data = self._cache[key]
        at = row - int(starts[group])
        if data["id"][at] != sample_id:
            raise StaleReferenceError(
                f"row {row} of {path} is {data['id'][at]}, not the selected {sample_id}: the pool changed since "
                "the selection; re-run `flywheel select`"
            )
        return {c: data[c][at] for c in BYTE_COLUMNS if c in data}


def attach_bytes(table: pa.Table, shard: Path) -> pa.Table:
    """`table` (read from `shard`) with its byte columns, fetched from the pool when it references them."""
    if IMAGES_SHARD.name in table.schema.names and "image" not in table.schema.names:
        return _attach_per_row(table, shard)
    source = bytes_source(shard, table.schema)
    if source is None or "image" in table.schema.names:
        return table
    pool = read_table(source, columns=["id", *(c for c in BYTE_COLUMNS if c in read_schema(source).names)])
    rows = table.column(POOL_ROW.name).to_numpy(zero_copy_only=False).astype(np.int64)
    if len(rows) and (rows.min() < 0 or rows.max() >= pool.num_rows):
        raise StaleReferenceError(f"{shard} references rows {source} does not have: re-run `flywheel select`")
    picked = pool.take(pa.array(rows))
    if not picked.column("id").equals(table.column("id")):
        raise StaleReferenceError(f"{source} no longer holds the rows {shard} selected: re-run `flywheel select`")
    for name in BYTE_COLUMNS:
        if name in picked.schema.names:
            table = table.append_column(pool.schema.field(name), picked.column(name))
    return table


def _attach_per_row(table: pa.Table, shard: Path) -> pa.Table:
    """Byte columns of per-row references (track data), read row group by row group through a BytesReader."""
    reader = BytesReader()
    paths = {rel: (shard.parent / rel).resolve() for rel in set(table.column(IMAGES_SHARD.name).to_pylist())}
    fetched = [
        reader.row(paths[rel], int(row), str(sid))
        for rel, row, sid in zip(
            table.column(IMAGES_SHARD.name).to_pylist(),
            table.column(POOL_ROW.name).to_pylist(),
            table.column("id").to_pylist(),
            strict=True,
        )
    ]
    for name in BYTE_COLUMNS:
        if any(name in f for f in fetched):
            table = table.append_column(
                pa.field(name, pa.binary()), pa.array([f.get(name) for f in fetched], pa.binary())
            )
    return table
