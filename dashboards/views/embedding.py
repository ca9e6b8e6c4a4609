"""The embedding map: a 2-D PCA projection of index vectors, coloured by curated / reject reason / category.

Up to MAX_POINTS rows of one index table are projected (PCA by SVD of the centred sample; the first two
components keep the largest spread, so clusters of rejects or of one category show as regions). The
projection is memoised per (table, row count); hovering a point shows the sample's thumbnail.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException, Request

from dashboards.charts import scatter
from dashboards.views.base import View
from flywheel.retrieval import IndexError_, RetrievalEngine

MAX_POINTS = 2000
COLOURINGS = ("curated", "reason", "category")


def project(vectors: np.ndarray) -> np.ndarray:
    """[N, D] -> [N, 2] principal-component coordinates (zeros when fewer than two rows)."""
    if len(vectors) < 2:
        return np.zeros((len(vectors), 2))
    centred = vectors - vectors.mean(axis=0, keepdims=True)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return centred @ vt[:2].T


def _points(app: FastAPI, table: str) -> dict[str, Any]:
    engine = RetrievalEngine(app.state.ws.index_dir)
    info = engine.info(table)
    key = f"map:{table}:{info.rows}"
    hit = app.state.memo.get(key)
    if hit is not None:
        return hit
    lance = engine.db.open_table(table)
    cols = [c for c in ("id", "vector", "curated", "reject_reason") if c in lance.schema.names]
    got = lance.search().select(cols).limit(MAX_POINTS).to_arrow()
    ids = got.column("id").to_pylist()
    flat = got.column("vector").combine_chunks().flatten().to_numpy(zero_copy_only=False) if got.num_rows else []
    xy = project(np.asarray(flat, dtype=np.float64).reshape(len(ids), info.space.dim))
    curated = got.column("curated").to_pylist() if "curated" in cols else [None] * len(ids)
    reason = got.column("reject_reason").to_pylist() if "reject_reason" in cols else [None] * len(ids)
    category: dict[str, str] = {}
    cur = app.state.cache.cursor()
    if cur is not None and ids:
        has = [r[0] for r in cur.execute("DESCRIBE pool").fetchall()]
        if "category" in has:
            import pyarrow as pa

            cur.register("map_ids", pa.table({"id": ids}))
            category = dict(
                cur.execute(
                    "SELECT p.id, any_value(p.category) FROM pool p JOIN map_ids USING (id) GROUP BY 1"
                ).fetchall()
            )
            cur.unregister("map_ids")
    out = {
        "ids": ids,
        "xy": xy.tolist(),
        "curated": curated,
        "reason": reason,
        "category": category,
        "space": info.space.describe(),
    }
    app.state.memo[key] = out
    return out


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    root = app.state.ws.index_dir
    if not root.is_dir():
        return {"sections": [], "empty": "no index in this workspace: run `flywheel index`"}
    engine = RetrievalEngine(root)
    tables = engine.table_names()
    if not tables:
        return {"sections": [], "empty": "the index has no tables: run `flywheel index`"}
    table = request.query_params.get("table") or tables[0]
    if table not in tables:
        raise HTTPException(404, f"no index table {table!r}")
    by = request.query_params.get("by", "curated")
    if by not in COLOURINGS:
        raise HTTPException(400, f"colour by one of {COLOURINGS}")
    try:
        pts = _points(app, table)
    except IndexError_ as exc:
        return {"sections": [], "empty": str(exc)}
    key = f"mapsvg:{table}:{len(pts['ids'])}:{id(pts)}:{by}"
    hit = app.state.memo.get(key)
    if hit is None:  # the drawn map depends only on the memoised projection and the colouring
        hit = _draw(pts, table, tables, by)
        app.state.memo[key] = hit
    return hit


def _draw(pts: dict[str, Any], table: str, tables: list[str], by: str) -> dict[str, Any]:

    def group(i: int, sid: str) -> str:
        if by == "curated":
            return {True: "curated", False: "rejected"}.get(pts["curated"][i], "unknown")
        if by == "reason":
            return pts["reason"][i] or ("curated" if pts["curated"][i] else "unknown")
        return pts["category"].get(sid) or "(none)"

    points = [(x, y, group(i, sid), sid) for i, (sid, (x, y)) in enumerate(zip(pts["ids"], pts["xy"], strict=True))]
    links = [(f"/data/embedding?table={t}&by={by}", t) for t in tables] + [
        (f"/data/embedding?table={table}&by={b}", f"colour by {b}") for b in COLOURINGS
    ]
    return {
        "sections": [
            {
                "title": f"{table}: {len(points)} points, PCA of {pts['space']}",
                "chart": scatter(points, label=f"embedding map {table}"),
                "links": links,
                "map": True,
            }
        ],
    }


VIEW = View("embedding", "Embedding map", build)
