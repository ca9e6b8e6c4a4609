"""Pretrain track: retrieval expansion of missing knowledge from the pool and reservoirs into expansion shards.

For each bad case routed to pretrain, the case's concepts are embedded and their neighbours retrieved from
the caption index (and a CLIP image index when one exists) of the pool and of every registered reservoir
(flywheel.reservoir: sources scored into the workspace but never curated). Pool candidates are rows not
already curated whose rejection, if any, came only from the recipe's distribution rules (`role:
distribution`: aspect, rotation, entropy, CLIP) - rows the stage left out for its distribution, not for
being bad. Every candidate must pass the recipe's quality rules (thresholds read from the recipe, not
hard-coded here), and candidates are deduplicated by image embedding (faiss) against the curated set and
against each other. Written as curated-like shards: every pool column plus `badcase_id` (the case of the
best hit), `provenance` (`pool` | `reservoir:<name>`), `expansion_badcase_ids` (all cases that retrieved
it), `expansion_similarity` and `expansion_query`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from flywheel.config import ConfigError
from flywheel.recipes import Recipe, load_recipe
from flywheel.retrieval.engine import IndexError_, RetrievalEngine, table_vectors
from flywheel.retrieval.knn import greedy_dedup
from flywheel.retrieval.space import TextEmbedder
from flywheel.routing.evidence import concepts_of
from flywheel.select.sql import keep_expression
from flywheel.store.images import POOL_ONLY_COLUMNS, row_references
from flywheel.tracks.common import track_dir, write_track
from flywheel.tracks.registry import TrackInputs
from flywheel.workspace import Workspace

# Where a candidate's bytes are, carried through the quality rules and dedup until the track is written.
_SHARD, _ROW = "_fw_pool_shard", "_fw_pool_row"


@dataclass
class ExpansionConfig:
    """Retrieval settings of the expansion; quality thresholds come from `recipe` (its quality rules)."""

    recipe: str = "stage1_256p"
    k: int = 50
    min_similarity: float = 0.45
    max_per_case: int = 20
    dedup_similarity: float = 0.95
    include_curated: bool = False  # true only to measure retrieval precision over the whole pool (bench/)

    def check(self) -> None:
        if not 0 <= self.min_similarity <= 1 or not 0 < self.dedup_similarity <= 1:
            raise ConfigError("expansion.min_similarity and dedup_similarity must be in [0, 1]")
        if self.k < 1 or self.max_per_case < 1:
            raise ConfigError("expansion.k and max_per_case must be >= 1")


@dataclass
class SearchSource:
    """One searchable set of scored rows: the pool, or a reservoir (its own workspace folder and index)."""

    provenance: str
    ws: Workspace
    engine: RetrievalEngine


@dataclass
class ExpansionResult:
    cases: int
    candidates: int
    written: int
    dropped_as_duplicates: int
    path: str | None
    below_quality: int = 0
    by_provenance: dict[str, int] = field(default_factory=dict)


def _where(recipe: Recipe, cfg: ExpansionConfig, pool: bool) -> str:
    """Index prefilter: not curated, and not rejected by anything but a distribution rule."""
    if not pool:
        return "broken_reason IS NULL"
    hard = [r.name for r in recipe.rules if r.role != "distribution"] + ["task"]
    never = ", ".join("'" + n.replace("'", "''") + "'" for n in hard)
    curated = "" if cfg.include_curated else "curated = false AND "
    return f"{curated}(reject_reason IS NULL OR reject_reason NOT IN ({never}))"


def expand(
    ws: Workspace,
    engine: RetrievalEngine,
    embedders: Sequence[TextEmbedder],
    cases: Sequence[dict[str, Any]],
    cfg: ExpansionConfig | None = None,
    reservoirs: Sequence[SearchSource] = (),
) -> ExpansionResult:
    """`embedders`: MiniLM for the caption table, plus the CLIP text tower when a CLIP image table exists;
    each searches the tables of its own space, in the pool's index and each reservoir's."""
    cfg = cfg or ExpansionConfig()
    cfg.check()
    recipe = load_recipe(cfg.recipe)
    sources = [SearchSource("pool", ws, engine), *reservoirs]
    found: dict[tuple[str, str], dict[str, Any]] = {}
    searched = 0
    for source in sources:
        pairs = [
            (e, t) for e in embedders for t in source.engine.tables() if t.space == e.space and t.space.text_queries
        ]
        searched += len(pairs)
        where = _where(recipe, cfg, source.provenance == "pool")
        for case in cases:
            concepts = concepts_of(case)
            hits_by_concept: dict[str, list[tuple[str, float]]] = {c: [] for c in concepts}
            for embedder, t in pairs:
                for concept, vec in zip(concepts, embedder.embed_texts(concepts), strict=True):
                    got = source.engine.search(t.name, vec, k=cfg.k, where=where, columns=["id"])
                    hits_by_concept[concept] += list(
                        zip(got.column("id").to_pylist(), got.column("similarity").to_pylist(), strict=True)
                    )
            for concept, hits in hits_by_concept.items():
                best = sorted((h for h in hits if h[1] >= cfg.min_similarity), key=lambda h: -h[1])
                for sid, sim in best[: cfg.max_per_case]:
                    entry = found.setdefault(
                        (source.provenance, sid), {"similarity": sim, "query": concept, "cases": []}
                    )
                    if sim > entry["similarity"]:
                        entry.update(similarity=sim, query=concept)
                    if case["case_id"] not in entry["cases"]:
                        entry["cases"].append(case["case_id"])
    if not searched:
        raise IndexError_(
            f"no index table in a space of {[e.space.describe() for e in embedders]}: run `flywheel index` first"
        )
    pool_ids = {sid for prov, sid in found if prov == "pool"}
    for key in [k for k in found if k[0] != "pool" and k[1] in pool_ids]:
        del found[key]  # the same content (id = content hash) in the pool and a reservoir: the pool's row wins
    ordered = sorted(found, key=lambda k: (-found[k]["similarity"], k))
    rows = _quality_rows(sources, ordered, recipe)
    passing = [k for k in ordered if k in rows]
    kept = _dedup(engine, sources, passing, cfg.dedup_similarity, against_curated=not cfg.include_curated)
    if not kept:
        return ExpansionResult(len(cases), len(ordered), 0, len(passing), None, len(ordered) - len(passing))
    table = _assemble(rows, kept, found)
    files, at = table.column(_SHARD).to_pylist(), table.column(_ROW).to_pylist()
    table = row_references(table.drop_columns([_SHARD, _ROW]), files, at, track_dir(ws, "pretrain"))
    prov = table.column("provenance").to_pylist()
    by_prov = {p: prov.count(p) for p in sorted(set(prov))}
    path = write_track(
        ws,
        "pretrain",
        table,
        {"cases": len(cases), "candidates": len(ordered), "recipe": recipe.name, "by_provenance": by_prov},
    )
    return ExpansionResult(
        len(cases),
        len(ordered),
        table.num_rows,
        len(passing) - len(kept),
        str(path),
        len(ordered) - len(passing),
        by_prov,
    )


def _quality_rows(
    sources: Sequence[SearchSource], keys: list[tuple[str, str]], recipe: Recipe
) -> dict[tuple[str, str], pa.Table]:
    """Full rows (one-row tables) of the candidates that pass the recipe's quality rules."""
    out: dict[tuple[str, str], pa.Table] = {}
    for source in sources:
        ids = [sid for prov, sid in keys if prov == source.provenance]
        if not ids:
            continue
        table = _pool_rows(source.ws, ids)
        con = duckdb.connect()
        con.register("rows_", table)
        rules = [r for r in recipe.quality_rules() if all(c in table.column_names for c in r.columns())]
        keep = " AND ".join(f"({keep_expression(r)})" for r in rules) or "TRUE"
        if "task" in table.column_names:
            keep += " AND task IN (" + ", ".join("'" + t + "'" for t in recipe.tasks) + ")"
        good = con.sql(f"SELECT * FROM rows_ WHERE {keep}").to_arrow_table()
        for i, sid in enumerate(good.column("id").to_pylist()):
            out[(source.provenance, sid)] = good.slice(i, 1)
    return out


def _assemble(
    rows: dict[tuple[str, str], pa.Table], kept: list[tuple[str, str]], found: dict[tuple[str, str], dict[str, Any]]
) -> pa.Table:
    tables = [rows[k] for k in kept]
    table = pa.concat_tables(tables, promote_options="permissive")
    extra = {
        "badcase_id": pa.array([found[k]["cases"][0] for k in kept], pa.string()),
        "provenance": pa.array([k[0] for k in kept], pa.string()),
        "expansion_badcase_ids": pa.array([found[k]["cases"] for k in kept], pa.list_(pa.string())),
        "expansion_similarity": pa.array([found[k]["similarity"] for k in kept], pa.float32()),
        "expansion_query": pa.array([found[k]["query"] for k in kept], pa.string()),
    }
    for name, values in extra.items():
        if name in table.column_names:
            table = table.drop_columns([name])
        table = table.append_column(name, values)
    return table


def _dedup(
    engine: RetrievalEngine,
    sources: Sequence[SearchSource],
    ordered: list[tuple[str, str]],
    threshold: float,
    *,
    against_curated: bool,
) -> list[tuple[str, str]]:
    """Drop candidates whose image is within `threshold` of a curated image or of a better candidate."""
    if not ordered:
        return []
    vec_of: dict[tuple[str, str], np.ndarray] = {}
    for source in sources:
        try:
            image = source.engine.find("image", text_queries=False)
        except IndexError_:
            continue  # no image index: the id (content hash) already removed exact repeats
        ids = [sid for prov, sid in ordered if prov == source.provenance]
        got_ids, vecs = table_vectors(source.engine, image.name, ids=ids)
        vec_of.update({(source.provenance, sid): vecs[i] for i, sid in enumerate(got_ids)})
    with_vec = [k for k in ordered if k in vec_of]
    if not with_vec:
        return ordered
    curated = None
    if against_curated:
        try:
            curated = table_vectors(engine, engine.find("image", text_queries=False).name, where="curated = true")[1]
        except IndexError_:
            curated = None
    dims = {v.shape[0] for v in vec_of.values()}
    if len(dims) > 1:  # a reservoir indexed in another image space: dedup per space is not possible
        return ordered
    keep = greedy_dedup(np.stack([vec_of[k] for k in with_vec]), threshold, against=curated)
    kept = {with_vec[i] for i in keep}
    return [k for k in ordered if k in kept or k not in vec_of]


def _pool_rows(ws: Workspace, ids: list[str]) -> pa.Table:
    """Pool rows for `ids` (one per id: its first uri), every column but the image bytes, plus where the bytes
    are: `_SHARD` (the pool shard's path) and `_ROW` (the row in it). The track references them (bytes once)."""
    con = duckdb.connect()
    con.register("wanted", pa.table({"id": ids}))
    shards = [str(p) for p in ws.require_pool()]
    scan = f"read_parquet(?, union_by_name=true, filename='{_SHARD}', file_row_number=true)"
    names = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {scan}", [shards]).fetchall()}
    skip = ", ".join(["rn", "file_row_number", *(c for c in POOL_ONLY_COLUMNS if c in names)])
    return con.sql(
        f"""SELECT * EXCLUDE ({skip}), file_row_number AS {_ROW} FROM (
                SELECT p.*, row_number() OVER (PARTITION BY p.id ORDER BY p.uri) AS rn
                FROM {scan} p WHERE p.id IN (SELECT id FROM wanted)) WHERE rn = 1""",
        params=[shards],
    ).to_arrow_table()


def build(inputs: TrackInputs) -> ExpansionResult:
    """The pretrain track's builder (flywheel.tracks.registry): MiniLM, plus CLIP's text tower when the index
    config names CLIP, searched in the pool's index and every reservoir's."""
    from flywheel.models.embedders import clip_from_config
    from flywheel.retrieval.config import IndexConfig

    cases = inputs.store.list(track="pretrain")
    if inputs.engine is None:
        raise IndexError_(
            f"the pretrain track retrieves from the index: run `flywheel index -w {inputs.ws.root}` first"
        )
    embedders: list[Any] = [inputs.text_embedder]
    clip = clip_from_config(inputs.index_cfg or IndexConfig.load())
    if clip is not None:
        embedders.append(clip)
    return expand(inputs.ws, inputs.engine, embedders, cases, inputs.expansion, reservoirs=inputs.reservoirs())
