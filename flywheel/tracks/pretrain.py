"""Pretrain track: retrieval expansion of missing knowledge from the pool into expansion shards.

For each bad case routed to pretrain, the case's concepts are embedded and their neighbours retrieved
from the pool's caption index (and from a CLIP image index when one exists), among rows that pass the
quality filter and are not already curated - that includes samples only the distribution rules (entropy,
CLIP, rotation thresholds) left out. Candidates are deduplicated against the curated set and against each
other by image embedding (faiss), and written as curated-like shards: every pool column plus provenance
(`badcase_id`: the case of the best hit, `expansion_badcase_ids`: all cases that retrieved it,
`provenance`: `pool` or `reservoir:<name>`, `expansion_similarity`, `expansion_query`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pyarrow as pa

from flywheel.config import ConfigError
from flywheel.retrieval.engine import IndexError_, RetrievalEngine, table_vectors
from flywheel.retrieval.knn import greedy_dedup
from flywheel.retrieval.space import TextEmbedder
from flywheel.routing.evidence import concepts_of
from flywheel.tracks.common import write_track
from flywheel.workspace import Workspace


@dataclass
class ExpansionConfig:
    """Thresholds of the expansion; `quality_where` is SQL over index metadata columns."""

    k: int = 50
    min_similarity: float = 0.45
    max_per_case: int = 20
    dedup_similarity: float = 0.95
    # A floor below the recipes' own thresholds: blank images (entropy <= 0.11 bits) and tiny ones never help.
    quality_where: str = (
        "broken_reason IS NULL AND caption_issue IS NULL AND (nsfw_score IS NULL OR "
        "nsfw_score <= 0.7) AND (resolution_min_side IS NULL OR resolution_min_side >= 256) "
        "AND (entropy_bits IS NULL OR entropy_bits >= 0.15)"
    )
    never_reasons: list[str] = field(
        default_factory=lambda: ["broken", "nsfw", "exact_dup", "near_dup", "caption_invalid", "caption_tokens", "task"]
    )
    include_curated: bool = False  # true only to measure retrieval precision over the whole pool (bench/)

    def check(self) -> None:
        if not 0 <= self.min_similarity <= 1 or not 0 < self.dedup_similarity <= 1:
            raise ConfigError("expansion.min_similarity and dedup_similarity must be in [0, 1]")
        if self.k < 1 or self.max_per_case < 1:
            raise ConfigError("expansion.k and max_per_case must be >= 1")


@dataclass
class ExpansionResult:
    cases: int
    candidates: int
    written: int
    dropped_as_duplicates: int
    path: str | None


def _where(cfg: ExpansionConfig) -> str:
    never = ", ".join(f"'{r}'" for r in cfg.never_reasons)
    curated = "" if cfg.include_curated else " AND curated = false"
    return f"({cfg.quality_where}){curated} AND (reject_reason IS NULL OR reject_reason NOT IN ({never}))"


def expand(
    ws: Workspace,
    engine: RetrievalEngine,
    embedders: Sequence[TextEmbedder],
    cases: Sequence[dict[str, Any]],
    cfg: ExpansionConfig | None = None,
) -> ExpansionResult:
    """`embedders`: MiniLM for the caption table, plus the CLIP text tower when a CLIP image table exists;
    each searches the tables of its own space."""
    cfg = cfg or ExpansionConfig()
    cfg.check()
    pairs = [(e, t) for e in embedders for t in engine.tables() if t.space == e.space and t.space.text_queries]
    if not pairs:
        raise IndexError_(
            f"no index table in a space of {[e.space.describe() for e in embedders]}: run `flywheel index` first"
        )
    found: dict[str, dict[str, Any]] = {}
    for case in cases:
        concepts = concepts_of(case)
        hits_by_concept: dict[str, list[tuple[str, float]]] = {c: [] for c in concepts}
        for embedder, t in pairs:
            for concept, vec in zip(concepts, embedder.embed_texts(concepts), strict=True):
                got = engine.search(t.name, vec, k=cfg.k, where=_where(cfg), columns=["id"])
                hits_by_concept[concept] += list(
                    zip(got.column("id").to_pylist(), got.column("similarity").to_pylist(), strict=True)
                )
        for concept, hits in hits_by_concept.items():
            hits = sorted((h for h in hits if h[1] >= cfg.min_similarity), key=lambda h: -h[1])[: cfg.max_per_case]
            for sid, sim in hits:
                entry = found.setdefault(sid, {"similarity": sim, "query": concept, "cases": []})
                if sim > entry["similarity"]:
                    entry.update(similarity=sim, query=concept)
                if case["case_id"] not in entry["cases"]:
                    entry["cases"].append(case["case_id"])
    ordered = sorted(found, key=lambda s: -found[s]["similarity"])
    kept = _dedup(engine, ordered, cfg.dedup_similarity, against_curated=not cfg.include_curated)
    if not kept:
        return ExpansionResult(len(cases), len(ordered), 0, len(ordered), None)
    rows = _pool_rows(ws, kept)
    prov = pa.table(
        {
            "id": kept,
            "expansion_badcase_ids": pa.array([found[s]["cases"] for s in kept], pa.list_(pa.string())),
            "expansion_similarity": pa.array([found[s]["similarity"] for s in kept], pa.float32()),
            "expansion_query": [found[s]["query"] for s in kept],
        }
    )
    con = duckdb.connect()
    con.register("rows_", rows)
    con.register("prov", prov)
    table = con.sql(
        "SELECT r.*, p.expansion_badcase_ids[1] AS badcase_id, 'pool' AS provenance, "
        "p.expansion_badcase_ids, p.expansion_similarity, p.expansion_query "
        "FROM rows_ r JOIN prov p USING (id) ORDER BY p.expansion_similarity DESC, r.id"
    ).to_arrow_table()
    path = write_track(ws, "pretrain", table, {"cases": len(cases), "candidates": len(ordered)})
    return ExpansionResult(len(cases), len(ordered), table.num_rows, len(ordered) - len(kept), str(path))


def _dedup(engine: RetrievalEngine, ordered: list[str], threshold: float, *, against_curated: bool) -> list[str]:
    """Drop candidates whose image is within `threshold` of a curated image or of a better candidate."""
    if not ordered:
        return []
    try:
        image = engine.find("image", text_queries=False)
    except IndexError_:
        return ordered  # no image index: the id (content hash) already removed exact repeats
    ids, vecs = table_vectors(engine, image.name, ids=ordered)
    by_id = dict(zip(ids, range(len(ids)), strict=True))
    with_vec = [s for s in ordered if s in by_id]
    curated = table_vectors(engine, image.name, where="curated = true")[1] if against_curated else None
    keep = greedy_dedup(vecs[[by_id[s] for s in with_vec]], threshold, against=curated)
    kept = {with_vec[i] for i in keep}
    return [s for s in ordered if s in kept or s not in by_id]


def _pool_rows(ws: Workspace, ids: list[str]) -> pa.Table:
    """Full pool rows (all columns, one row per id: its first uri) for `ids`."""
    con = duckdb.connect()
    con.register("wanted", pa.table({"id": ids}))
    shards = [str(p) for p in ws.require_pool()]
    return con.sql(
        """SELECT * EXCLUDE (rn) FROM (
                        SELECT p.*, row_number() OVER (PARTITION BY p.id ORDER BY p.uri) AS rn
                        FROM read_parquet(?) p WHERE p.id IN (SELECT id FROM wanted)) WHERE rn = 1""",
        params=[shards],
    ).to_arrow_table()
