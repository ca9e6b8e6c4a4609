"""`flywheel index`: embed the pool's images and captions on Ray Data into the workspace's LanceDB index.

Incremental by content id: only ids that a table does not hold yet are read, decoded and embedded; the
metadata of rows already indexed (recipe membership, scores) is refreshed in place, because a re-selection
changes membership but never a vector. Embedding runs in a Ray Data actor pool (one model per actor, on a
GPU when Ray sees one); the driver is the only writer of the LanceDB tables, appending in chunks so memory
stays bounded by the chunk, not the pool.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.models.embedders import EfficientNetImageEmbedder, MiniLMTextEmbedder, clip_from_config
from flywheel.retrieval.config import IndexConfig
from flywheel.retrieval.engine import RetrievalEngine, vectors_to_arrow
from flywheel.retrieval.metadata import pool_metadata
from flywheel.retrieval.space import table_name
from flywheel.store import fs as storage
from flywheel.workspace import Workspace
from pipelines.ray_runtime import init_ray

APPEND_CHUNK_ROWS = 4096


@dataclass
class TableReport:
    table: str
    space: str
    embedded: int
    skipped_existing: int
    undecodable: int
    rows: int
    ann: bool
    seconds: float


@dataclass
class IndexReport:
    tables: list[TableReport] = field(default_factory=list)
    seconds: float = 0.0


class EmbedBatch:
    """Ray Data actor: one embedder (model loaded once per actor), a batch of rows in, vectors out."""

    def __init__(self, embedder: Any, field_name: str) -> None:
        self.embedder = embedder
        self.field = field_name

    def __call__(self, batch: pa.Table) -> pa.Table:
        ids = batch.column("id")
        if self.field == "image":
            vectors, ok = self.embedder.embed_images(batch.column("image").to_pylist())
        else:
            vectors = self.embedder.embed_texts([c or "" for c in batch.column("caption").to_pylist()])
            ok = np.ones(len(vectors), dtype=bool)
        return pa.table({"id": ids, "vector": vectors_to_arrow(vectors), "ok": pa.array(ok)})


def _todo_uris(meta: pa.Table, field_name: str, existing: set[str]) -> pa.Array:
    """One representative uri per id that the table lacks (ids without a caption have no caption vector)."""
    mask = pc.invert(pc.is_in(meta.column("id"), pa.array(sorted(existing), pa.string())))
    if field_name == "caption":
        mask = pc.and_(mask, pc.greater(pc.utf8_length(pc.fill_null(meta.column("caption"), "")), 0))
    else:
        mask = pc.and_(mask, pc.is_null(meta.column("broken_reason"))) if "broken_reason" in meta.column_names else mask
    return meta.filter(mask).column("uri").combine_chunks()


def build_index(
    ws: Workspace,
    cfg: IndexConfig | None = None,
    *,
    ray_address: str | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> IndexReport:
    """Embed what is new, refresh metadata, build the ANN index of tables that grew past `ann.min_rows`."""
    import ray

    cfg = cfg or IndexConfig.load()
    start = time.perf_counter()
    shards = [str(p) for p in ws.require_pool()]
    meta = pool_metadata(ws)
    cfg.store(ws)  # beside the index: search, route and tracks read it (IndexConfig.for_workspace)
    init_ray(ray_address)  # before LanceDB opens: Ray forks workers, and LanceDB's runtime dislikes forks
    engine = RetrievalEngine(ws.index_dir, cfg.ann)
    embedders: list[tuple[str, Any]] = [
        ("image", EfficientNetImageEmbedder(cfg.image_size)),
        ("caption", MiniLMTextEmbedder(cfg.text_max_length)),
    ]
    clip = clip_from_config(cfg)
    if clip is not None:
        embedders.append(("image", clip))
    else:
        log(
            "no CLIP weights configured (index clip_checkpoint / FLYWHEEL_CLIP_CHECKPOINT): text queries search "
            "captions (MiniLM); images are searchable by image or id"
        )
    gpus = 1 if ray.cluster_resources().get("GPU", 0) >= 1 else 0
    report = IndexReport()
    # A second `flywheel index` on this workspace waits here, then finds the first run's ids and skips them.
    with engine.build_lock():
        for field_name, embedder in embedders:
            _index_field(engine, cfg, meta, shards, field_name, embedder, gpus, report, log)
    report.seconds = time.perf_counter() - start
    return report


def _index_field(
    engine: RetrievalEngine,
    cfg: IndexConfig,
    meta: pa.Table,
    shards: list[str],
    field_name: str,
    embedder: Any,
    gpus: int,
    report: IndexReport,
    log: Callable[[str], None],
) -> None:
    """Embed the ids one (field, space) table lacks, refresh the metadata of the others, keep its ANN current."""
    import ray

    t0 = time.perf_counter()
    name = table_name(field_name, embedder.space)
    existing = engine.existing_ids(field_name, embedder.space)
    todo = _todo_uris(meta, field_name, existing)
    embedded = undecodable = 0
    if len(todo):
        log(f"{name}: embedding {len(todo)} new id(s) with {embedder.space.describe()}")
        # One read task per pool shard (pyarrow, only the needed columns); Ray ships `todo` once.
        ds = ray.data.from_items([{"shard": s} for s in shards], override_num_blocks=len(shards))
        ds = ds.map_batches(
            _read_todo, fn_args=(todo, field_name), batch_format="pyarrow", batch_size=1, **storage.worker_env()
        )
        # max_restarts=0: the embedder travels as a constructor argument in the object store, which a
        # restarted actor cannot rely on (Ray logs an error-level line per actor otherwise). A lost actor
        # fails this run; the next one embeds only what is still missing. Ray 2.60 deprecates passing
        # max_restarts this way without a named replacement, so that one warning is silenced here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=DeprecationWarning)
            ds = ds.map_batches(
                EmbedBatch,
                fn_constructor_args=(embedder, field_name),
                batch_format="pyarrow",
                batch_size=cfg.batch_size,
                compute=ray.data.ActorPoolStrategy(size=1),
                num_gpus=gpus,
                num_cpus=0 if gpus else 1,
                max_restarts=0,
            )
        pending: list[pa.Table] = []
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            pending.append(batch)
            if sum(b.num_rows for b in pending) >= APPEND_CHUNK_ROWS:
                e, u = _append(engine, field_name, embedder, meta, pending)
                embedded, undecodable, pending = embedded + e, undecodable + u, []
        if pending:
            e, u = _append(engine, field_name, embedder, meta, pending)
            embedded, undecodable = embedded + e, undecodable + u
    if existing:
        engine.update_metadata(name, meta.filter(pc.is_in(meta.column("id"), pa.array(sorted(existing), pa.string()))))
    if name not in engine.table_names():
        return
    info = engine.info(name)
    if info.ann and embedded:
        engine.db.open_table(name).optimize()  # fold the new rows into the existing ANN index
    elif not info.ann and engine.build_ann_if_large(name):
        served = f" and a faiss {cfg.ann.faiss.index_type} serving index" if cfg.ann.serving == "faiss" else ""
        log(f"{name}: built {cfg.ann.index_type} index{served} over {info.rows} rows")
    how = engine.ensure_serving(name)  # the faiss copy a write invalidated, or one this index never had
    if how is not None:
        log(f"{name}: {how} faiss {cfg.ann.faiss.index_type} serving index over {info.rows} rows")
    info = engine.info(name)
    report.tables.append(
        TableReport(
            name,
            info.space.describe(),
            embedded,
            len(existing),
            undecodable,
            info.rows,
            info.ann,
            time.perf_counter() - t0,
        )
    )


def _read_todo(batch: pa.Table, uris: pa.Array, field_name: str) -> pa.Table:
    """Read one pool shard's id and `field_name` columns, keeping only the representative rows still to embed."""

    shard = storage.read_table(batch.column("shard")[0].as_py(), columns=["id", "uri", field_name])
    return shard.filter(pc.is_in(shard.column("uri"), uris)).drop_columns(["uri"])


def _append(
    engine: RetrievalEngine, field_name: str, embedder: Any, meta: pa.Table, batches: list[pa.Table]
) -> tuple[int, int]:
    """Join embedded rows with their metadata (caption included, so every table shows what it found)."""
    got = pa.concat_tables(batches)
    ok = got.column("ok")
    undecodable = int(pc.sum(pc.invert(ok)).as_py() or 0)
    got = got.filter(ok).drop_columns(["ok"])
    if got.num_rows == 0:
        return 0, undecodable
    idx = pc.index_in(got.column("id"), meta.column("id"))
    rows = meta.take(idx).drop_columns(["id"])
    table = got
    for name in rows.column_names:
        table = table.append_column(name, rows.column(name))
    return engine.add(field_name, embedder.space, table), undecodable
