"""The retrieval engine: LanceDB tables of pool embeddings under WORKSPACE/index/, one table per (field, space).

Each table holds `id`, `vector` and the metadata users filter on (flywheel.retrieval.metadata); its Arrow
schema metadata records the embedding space, so a search can say which space it used and refuse a query
vector of another width. Small tables are searched exactly (a flat scan over a few thousand vectors is
faster than any index); once a table passes `ann.min_rows` an ANN index (IVF_PQ by default) is built, and
searches re-rank `refine_factor * k` candidates with the full vectors to keep recall high.

With `ann.serving: faiss` (the default) a large table also gets a faiss IVF copy of its vectors
(flywheel.retrieval.serving) that answers queries in a few milliseconds; LanceDB then only fetches the
metadata of the hits by id, and answers the selective filtered queries the faiss candidates cannot.
"""

from __future__ import annotations

import json
import warnings
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lancedb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.errors import UserError
from flywheel.retrieval import serving
from flywheel.retrieval.config import AnnConfig
from flywheel.retrieval.space import FIELDS, EmbeddingSpace, table_name
from flywheel.store.fs import lance_storage_options, storage_path
from flywheel.store.locks import file_lock

SPACE_KEY = b"flywheel.space"


class IndexError_(UserError, LookupError):
    """The index lacks a table, or a query does not fit the table's space; the message says what to run."""


@dataclass(frozen=True)
class TableInfo:
    name: str
    field: str
    space: EmbeddingSpace
    rows: int
    ann: bool


def _space_meta(field: str, space: EmbeddingSpace) -> dict[bytes, bytes]:
    return {
        SPACE_KEY: json.dumps(
            {"field": field, "model": space.model, "dim": space.dim, "text_queries": space.text_queries}
        ).encode()
    }


def vectors_to_arrow(vectors: np.ndarray) -> pa.FixedSizeListArray:
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    return pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), vectors.shape[1])


class RetrievalEngine:
    """Embedded LanceDB database at `root` (WORKSPACE/index)."""

    def __init__(self, root: str | Path, ann: AnnConfig | None = None) -> None:
        self.root = storage_path(root)
        self.ann = ann or AnnConfig()
        self.root.mkdir(parents=True, exist_ok=True)
        # A local folder, or an object-store prefix that LanceDB opens with the same AWS settings.
        self.db = lancedb.connect(str(self.root), storage_options=lance_storage_options(self.root))
        self._served: dict[str, serving.ServingIndex] = {}

    # --- tables -------------------------------------------------------------------------------------------
    def table_names(self) -> list[str]:
        return sorted(self.db.list_tables().tables)

    def info(self, name: str) -> TableInfo:
        table = self._open(name)
        meta = json.loads((table.schema.metadata or {}).get(SPACE_KEY, b"{}"))
        if not meta:
            raise IndexError_(f"index table {name} has no embedding-space metadata; rebuild it with `flywheel index`")
        space = EmbeddingSpace(meta["model"], int(meta["dim"]), bool(meta["text_queries"]))
        has_ann = any(ix.index_type != "BTree" and "vector" in ix.columns for ix in table.list_indices())
        return TableInfo(name, meta["field"], space, table.count_rows(), has_ann)

    def tables(self) -> list[TableInfo]:
        return [self.info(n) for n in self.table_names()]

    def find(self, field: str, *, text_queries: bool | None = None) -> TableInfo:
        """The table embedding `field`; with `text_queries`, one whose space can embed text queries."""
        if field not in FIELDS:
            raise IndexError_(f"unknown field {field!r}; known: {FIELDS}")
        candidates = [
            t
            for t in self.tables()
            if t.field == field and (text_queries is None or t.space.text_queries == text_queries)
        ]
        if not candidates:
            want = " with a text tower (configure CLIP weights)" if text_queries else ""
            raise IndexError_(f"no {field} index{want} in {self.root}: run `flywheel index --workspace ...` first")
        return max(candidates, key=lambda t: t.rows)

    def _open(self, name: str) -> lancedb.table.Table:
        if name not in self.table_names():
            raise IndexError_(f"no index table {name} in {self.root}: run `flywheel index` first")
        return self.db.open_table(name)

    # --- writes -------------------------------------------------------------------------------------------
    def existing_ids(self, field: str, space: EmbeddingSpace) -> set[str]:
        name = table_name(field, space)
        if name not in self.table_names():
            return set()
        table = self.db.open_table(name)
        ids = table.search().select(["id"]).limit(table.count_rows() or 1).to_arrow().column("id")
        return set(ids.to_pylist())

    def write_lock(self) -> AbstractContextManager[None]:
        """Exclusive lock of the table writes: two `flywheel index` runs must not both create or append."""
        return file_lock(self.root / ".write.lock")

    def build_lock(self) -> AbstractContextManager[None]:
        """Lock held by a whole `flywheel index` run, so a second run waits and then embeds only what is new."""
        return file_lock(self.root / ".build.lock")

    def add(self, field: str, space: EmbeddingSpace, rows: pa.Table) -> int:
        """Upsert rows (id, vector, metadata...) by id into the (field, space) table, creating it on first use.

        An upsert, not an append: a row whose id the table holds already replaces it, so a repeated or
        concurrent index run never stores an id twice. Runs under the write lock.
        """
        if rows.num_rows == 0:
            return 0
        vec_type = rows.schema.field("vector").type
        if not pa.types.is_fixed_size_list(vec_type) or vec_type.list_size != space.dim:
            raise IndexError_(
                f"vectors of width {getattr(vec_type, 'list_size', '?')} do not fit space {space.describe()}"
            )
        name = table_name(field, space)
        rows = rows.replace_schema_metadata(_space_meta(field, space))
        with self.write_lock():
            # before the write: log the ids for the next fold and stop serving the copy, which no longer matches
            serving.note_write(self.root, name, rows.column("id"))
            if name in self.table_names():
                table = self.db.open_table(name)
                rows = _conform(rows, table.schema)
                table.merge_insert("id").when_matched_update_all().when_not_matched_insert_all().execute(rows)
            else:
                self.db.create_table(name, rows)
        return rows.num_rows

    def update_metadata(self, name: str, metadata: pa.Table) -> None:
        """Refresh membership and scores of existing rows (a re-selection changes them; vectors do not)."""
        with self.write_lock():
            table = self._open(name)
            cols = [c for c in metadata.column_names if c in table.schema.names]
            table.merge_insert("id").when_matched_update_all().execute(metadata.select(cols))

    def build_ann_if_large(self, name: str, *, force: bool = False) -> bool:
        """Build the ANN index once the table has `ann.min_rows` rows; return whether one was built."""
        table = self._open(name)
        rows = table.count_rows()
        if rows < self.ann.min_rows and not force:
            return False
        dim = self.info(name).space.dim
        partitions = self.ann.num_partitions or max(16, min(256, int(rows**0.5)))
        sub_vectors = self.ann.num_sub_vectors or max(1, dim // 8)
        kwargs: dict[str, object] = {
            "metric": "cosine",
            "vector_column_name": "vector",
            "replace": True,
            "index_type": self.ann.index_type,
            "num_partitions": partitions,
        }
        if self.ann.index_type.endswith("PQ"):
            kwargs["num_sub_vectors"] = sub_vectors
        table.create_index(**kwargs)  # type: ignore[arg-type]
        if self.ann.serving == "faiss":
            self.build_serving(name)
        return True

    def build_serving(self, name: str) -> dict[str, object]:
        """Build (or rebuild) the table's faiss serving copy and the id index its hit lookups use.

        Runs under the write lock, so no vector is written between reading the table and publishing the
        copy. Returns the copy's manifest (rows, index type, nlist).
        """
        info = self.info(name)
        with self.write_lock():
            table = self._open(name)
            if not any(ix.index_type == "BTree" and ix.columns == ["id"] for ix in table.list_indices()):
                # hits are fetched by id: without this index each lookup scans every id of the table.
                # LanceDB 0.40 deprecates create_scalar_index for create_index(config=BTree()), whose
                # positional API takes the column as `metric`; the stable call is kept, its warning silenced.
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", category=DeprecationWarning)
                    table.create_scalar_index("id", replace=True)
            manifest = serving.build(self.root, name, table, info.field, info.space, self.ann.faiss)
        self._served.pop(name, None)
        return manifest

    def ensure_serving(self, name: str) -> Literal["built", "folded"] | None:
        """Publish a current faiss copy of a table that has its ANN index but none (a write invalidated it,
        or the index predates `ann.serving`); return how ("built" or "folded"), or None when none was needed.

        After writes the rows written are folded into the stale copy (serving.fold: no retraining, seconds);
        a full `build_serving` runs when there is nothing to fold into, or the folded rows pass
        `ann.faiss.retrain_after` of the rows the copy was trained on.
        """
        if self.ann.serving != "faiss" or serving.is_built(self.root, name):
            return None
        info = self.info(name)
        if not info.ann:
            return None
        with self.write_lock():
            if serving.is_built(self.root, name):  # another process published one meanwhile
                return None
            folded = serving.fold(self.root, name, self._open(name), info.field, info.space, self.ann.faiss)
        if folded is None:
            self.build_serving(name)
        self._served.pop(name, None)
        return "built" if folded is None else "folded"

    def served(self, name: str) -> serving.ServingIndex | None:
        """The faiss copy that answers searches of `name`, or None (LanceDB answers)."""
        if self.ann.serving != "faiss":
            return None
        got = serving.load(self.root, name, self._served.get(name), mmap=self.ann.faiss.mmap)
        if got is None:
            self._served.pop(name, None)
        else:
            self._served[name] = got
        return got

    # --- reads --------------------------------------------------------------------------------------------
    def vector_of(self, name: str, sample_id: str) -> np.ndarray:
        table = self._open(name)
        hit = table.search().where(f"id = '{_sql_str(sample_id)}'").select(["vector"]).limit(1).to_arrow()
        if hit.num_rows == 0:
            raise IndexError_(f"id {sample_id} is not in index table {name}")
        return np.asarray(hit.column("vector")[0].as_py(), dtype=np.float32)

    def search(
        self, name: str, query: np.ndarray, *, k: int = 10, where: str | None = None, columns: list[str] | None = None
    ) -> pa.Table:
        """Nearest neighbours of one L2-normalised query: metadata, `similarity` (cosine) and the space used."""
        served = self.served(name)
        if served is not None:
            got = self._search_served(served, name, query, k=k, where=where, columns=columns)
            if got is not None:
                return got
        info = self.info(name)
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != info.space.dim:
            raise IndexError_(f"query has width {query.shape[0]}, table {name} holds {info.space.describe()}")
        table = self._open(name)
        builder = table.search(query, vector_column_name="vector").distance_type("cosine").limit(k)
        if where:
            builder = builder.where(where, prefilter=True)
        if info.ann:
            builder = builder.nprobes(self.ann.nprobes).refine_factor(self.ann.refine_factor)
        if columns is not None:
            present = set(table.schema.names)  # pools differ in which score columns they have
            builder = builder.select(sorted((set(columns) & present) | {"id", "_distance"}))
        try:
            result = builder.to_arrow()
        except (ValueError, RuntimeError, OSError) as exc:
            raise IndexError_(f"search on {name} failed (check the --where SQL): {exc}") from exc
        result = result.drop_columns([c for c in ("vector",) if c in result.column_names])
        similarity = pa.array(1.0 - result.column("_distance").to_numpy(zero_copy_only=False), pa.float32())
        result = result.drop_columns(["_distance"]).append_column("similarity", similarity)
        return _with_space(result, info.space, name)

    def _search_served(
        self,
        served: serving.ServingIndex,
        name: str,
        query: np.ndarray,
        *,
        k: int,
        where: str | None,
        columns: list[str] | None,
    ) -> pa.Table | None:
        """`search` through the faiss copy; None when a filter leaves fewer than k of its candidates (LanceDB's
        prefiltered search answers those). The hits' metadata comes from LanceDB by id, so it is current."""
        query = np.asarray(query, dtype=np.float32).reshape(-1)
        if query.shape[0] != served.space.dim:
            raise IndexError_(f"query has width {query.shape[0]}, table {name} holds {served.space.describe()}")
        cfg = self.ann.faiss
        n = k if where is None else k * cfg.filter_oversample
        sims, ids = serving.search(served, query, n, cfg.nprobe)
        if where is None and columns is not None and set(columns) <= {"id"}:
            hits = pa.table({"id": ids})  # the copy holds the ids: no table read at all
        else:
            table = self.db.open_table(name)
            present = table.schema.names
            cols = sorted((set(columns) & set(present)) | {"id"}) if columns is not None else present
            cols = [c for c in cols if c != "vector"]
            sql = "id IN (" + ", ".join(f"'{_sql_str(i)}'" for i in ids.to_pylist()) + ")" if len(ids) else "false"
            if where:
                sql = f"({sql}) AND ({where})"
            try:
                hits = table.search().where(sql).select(cols).limit(max(1, len(ids))).to_arrow()
            except (ValueError, RuntimeError, OSError) as exc:
                raise IndexError_(f"search on {name} failed (check the --where SQL): {exc}") from exc
            if where and hits.num_rows < k and len(ids) < served.rows:
                return None
            rank = pc.index_in(hits.column("id"), ids).to_numpy(zero_copy_only=False)
            order = np.argsort(rank, kind="stable")
            hits = hits.take(pa.array(order))
            sims = sims[rank[order]]
        hits = hits.slice(0, k)
        result = hits.append_column("similarity", pa.array(sims[: hits.num_rows], pa.float32()))
        return _with_space(result, served.space, name)


def _with_space(result: pa.Table, space: EmbeddingSpace, name: str) -> pa.Table:
    return result.replace_schema_metadata(
        {b"flywheel.space": space.describe().encode(), b"flywheel.table": name.encode()}
    )


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


def table_vectors(
    engine: RetrievalEngine, name: str, where: str | None = None, ids: list[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """All (id, vector) rows of a table matching `where` / `ids`, for bulk work in faiss."""
    table = engine._open(name)
    clauses = [where] if where else []
    if ids is not None:
        if not ids:
            return [], np.zeros((0, engine.info(name).space.dim), dtype=np.float32)
        clauses.append("id IN (" + ", ".join(f"'{_sql_str(i)}'" for i in ids) + ")")
    query = table.search().select(["id", "vector"]).limit(max(1, table.count_rows()))
    if clauses:
        query = query.where(" AND ".join(f"({c})" for c in clauses))
    got = query.to_arrow()
    dim = engine.info(name).space.dim
    flat = got.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False) if got.num_rows else []
    return got.column("id").to_pylist(), np.asarray(flat, dtype=np.float32).reshape(-1, dim)


def _conform(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """`rows` in an existing table's column set: the index's score columns follow the pool's schema, so a
    column the pool gained after the table was made is left out (rebuild the index to add it) and one it
    lost is null."""
    cols = [
        rows.column(f.name).cast(f.type) if f.name in rows.column_names else pa.nulls(rows.num_rows, f.type)
        for f in schema
    ]
    return pa.Table.from_arrays(cols, schema=schema).replace_schema_metadata(rows.schema.metadata)
