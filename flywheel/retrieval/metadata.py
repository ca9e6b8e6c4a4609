"""The metadata each index row carries so that users can filter neighbours: scores and recipe membership.

One index row per content id (exact duplicates share an id and therefore an embedding). Membership is
aggregated over the id's rows: `kept_in` lists the curated recipes that kept any of them, `reject_reasons`
lists every rule that rejected one of them, and `reject_reason` is the primary reason of the first recipe
that rejected the id without keeping it. That is what lets the pretrain track find samples that only the
distribution rules (entropy, clip, ...) left out, while a broken or duplicate row stays recognisable.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from flywheel.schema import CORE_COLUMNS
from flywheel.store import fs as storage
from flywheel.workspace import Workspace

# Always in the index, null where the pool lacks them: the core's own prefilters name them (the image table
# skips broken rows, expansion searches reservoirs with `broken_reason IS NULL`).
FIXED_TYPES = {"width": "INTEGER", "height": "INTEGER", "task": "VARCHAR", "broken_reason": "VARCHAR"}
# Columns this module derives (recipe membership); a pool column of the same name is not copied.
DERIVED = {"kept_in", "reject_reasons", "reject_reason", "curated", "n_rows"}


def _scalar(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_string(t) or pa.types.is_boolean(t)


def score_columns(schema: pa.Schema) -> list[str]:
    """The pool's score columns as its Parquet schema declares them, in schema order: every scalar field that
    is not a core column and whose metadata (flywheel.schema.Column.field writes description, unit and owner
    into each field) names an owner other than the core. The index copies these so users can filter
    neighbours on any score a filter declared, without the core naming filters' columns: a new filter's
    scores reach the index on their own."""
    skip = {c.name for c in CORE_COLUMNS} | set(FIXED_TYPES) | DERIVED
    out = []
    for f in schema:
        owner = (f.metadata or {}).get(b"owner", b"").decode()  # no metadata: a hand-made pool; judge by name
        if owner != "core" and f.name not in skip and _scalar(f.type):
            out.append(f.name)
    return out


def _glob(paths: list[Path]) -> list[str]:
    return [str(p) for p in paths]


def pool_metadata(ws: Workspace, ids: list[str] | None = None) -> pa.Table:
    """One row per pool id: id, uri (first), caption, score columns, and recipe membership.

    Reads only the small columns of the pool (never the image bytes) and the recipes' rejected rows
    (selections/<recipe>/rejected.parquet).
    """
    shards = ws.require_pool()
    con = storage.duckdb_connect(ws.root)
    con.execute("SET threads TO 2")
    schema = pa.unify_schemas([storage.read_schema(s) for s in shards])
    scores = [*FIXED_TYPES, *score_columns(schema)]
    score_sql = "".join(f', any_value("{c}" ORDER BY uri) AS "{c}"' for c in scores)
    select_scores = "".join(f', "{c}"' if c in schema.names else f', NULL::{FIXED_TYPES[c]} AS "{c}"' for c in scores)
    con.execute(f"CREATE TEMP TABLE p AS SELECT id, uri, caption{select_scores} FROM read_parquet(?)", [_glob(shards)])
    if ids is not None:
        con.register("wanted", pa.table({"id": pa.array(ids, pa.string())}))
        con.execute("DELETE FROM p WHERE id NOT IN (SELECT id FROM wanted)")
    con.execute("CREATE TEMP TABLE kept (recipe VARCHAR, id VARCHAR)")
    con.execute("CREATE TEMP TABLE rej (recipe VARCHAR, id VARCHAR, reason VARCHAR, reasons VARCHAR[])")
    for recipe in ws.curated_recipes():
        kept_shards = ws.curated_store(recipe).shard_paths()
        if kept_shards:
            con.execute("INSERT INTO kept SELECT ?, id FROM read_parquet(?)", [recipe, _glob(kept_shards)])
        rejected = ws.rejected_path(recipe)
        if rejected.is_file():
            con.execute(
                "INSERT INTO rej SELECT ?, id, reason, reasons FROM read_parquet(?)",
                [recipe, str(rejected)],
            )
    table = con.sql(f"""
        WITH k AS (SELECT id, list(DISTINCT recipe ORDER BY recipe) AS kept_in FROM kept GROUP BY id),
             r AS (SELECT id, list(DISTINCT x ORDER BY x) AS reject_reasons,
                          arg_min(reason, recipe) AS reject_reason
                   FROM (SELECT rej.id, rej.recipe, rej.reason, unnest(rej.reasons) AS x FROM rej
                         WHERE NOT EXISTS (SELECT 1 FROM kept WHERE kept.id = rej.id AND kept.recipe = rej.recipe))
                   GROUP BY id)
        SELECT p.id, min(p.uri) AS uri, any_value(p.caption ORDER BY p.uri) AS caption{score_sql},
               coalesce(any_value(k.kept_in), []::VARCHAR[]) AS kept_in,
               coalesce(any_value(r.reject_reasons), []::VARCHAR[]) AS reject_reasons,
               CASE WHEN any_value(k.kept_in) IS NULL THEN any_value(r.reject_reason) END AS reject_reason,
               any_value(k.kept_in) IS NOT NULL AS curated,
               count(*) AS n_rows
        FROM p LEFT JOIN k USING (id) LEFT JOIN r USING (id)
        GROUP BY p.id ORDER BY p.id""").to_arrow_table()
    string_list = pa.list_(pa.string())
    for name in ("kept_in", "reject_reasons"):
        table = table.set_column(table.schema.get_field_index(name), name, table.column(name).cast(string_list))
    return table
