"""`mix:` sources of a recipe: track rows selected into `WS/mix/<recipe>/<source>/` beside the curated set.

The curated folder keeps only the pool rows the recipe kept (readers pointed at it read exactly those); the
rows a `mix:` entry brings in are written as their own ShardStore, one per source, and
`selections/<recipe>/mix.json` lists them with their weights, so the trainer can draw from each at its weight
and log the provenance it drew. Track rows pass the recipe's task filter and the rules the entry asks for
(default: quality rules), and are deduplicated against the curated set (by id and by `dedup_sha256`) and
against each other (first row of each id / content hash wins, in the track's order).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from flywheel.recipes.recipe import MixSource, Recipe, Rule
from flywheel.select.outputs import swap_in
from flywheel.store import fs as storage
from flywheel.store.images import rebase_references
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

MIX_MANIFEST = "mix.json"
# Columns every mix shard carries (added when a track lacks them): which bad case asked for the row and
# where it came from ("pool" | "reservoir:<name>"), so the trainer can log the provenance it drew.
PROVENANCE_COLUMNS = ("badcase_id", "provenance")


@dataclass
class MixOutcome:
    """What one mix entry contributed: rows in the track, rows kept, removals per reason, provenance counts."""

    source: str
    weight: float
    rules: str
    dir: str  # relative to the workspace root
    rows_in: int = 0
    kept: int = 0
    by_reason: dict[str, int] = field(default_factory=dict)
    provenance: dict[str, int] = field(default_factory=dict)
    not_applied: list[str] = field(default_factory=list)
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "weight": self.weight,
            "rules": self.rules,
            "dir": self.dir,
            "rows_in": self.rows_in,
            "kept": self.kept,
            "by_reason": self.by_reason,
            "provenance": self.provenance,
            "not_applied": self.not_applied,
            "note": self.note,
        }


def mix_dir(ws: Workspace, recipe: str, source: MixSource) -> Path:
    return ws.mix_dir(recipe) / source.slug


def select_mix(
    ws: Workspace,
    recipe: Recipe,
    curated_ids: pa.Table,
    keep_expression: Any,
) -> list[MixOutcome]:
    """Select every mix source of `recipe`; `curated_ids` has the kept rows' `id` (and `dedup_sha256`)."""
    outcomes = []
    for source in recipe.mix:
        outcomes.append(_select_one(ws, recipe, source, curated_ids, keep_expression))
    return outcomes


def _rules_for(recipe: Recipe, source: MixSource) -> list[Rule]:
    if source.rules == "none":
        return []
    if source.rules == "all":
        return [r for r in recipe.rules if not r.dedup]
    return recipe.quality_rules()


def _select_one(
    ws: Workspace, recipe: Recipe, source: MixSource, curated_ids: pa.Table, keep_expression: Any
) -> MixOutcome:
    out_dir = mix_dir(ws, recipe.name, source)
    outcome = MixOutcome(source.source, source.weight, source.rules, str(out_dir.relative_to(ws.root)))
    shards = [str(p) for p in ShardStore(ws.root / source.source).shard_paths()]
    tmp = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir(parents=True)
    store = ShardStore(tmp)
    if not shards:
        outcome.note = f"{source.source} has no complete shards yet (run `flywheel tracks` first)"
    else:
        table = _filter(shards, recipe, source, curated_ids, keep_expression, outcome)
        table = rebase_references(table, ws.root / source.source, out_dir)  # track rows point at pool bytes
        if table.num_rows:
            store.write(0, table, fingerprint=f"mix:{recipe.name}:{source.source}")
            prov = table.column("provenance").to_pylist()
            outcome.provenance = {p: prov.count(p) for p in sorted(set(prov))}
        outcome.kept = table.num_rows
    store.write_manifest({"recipe": recipe.name, "from": source.source, "weight": source.weight})
    swap_in(tmp, out_dir)
    return outcome


def _filter(
    shards: list[str],
    recipe: Recipe,
    source: MixSource,
    curated_ids: pa.Table,
    keep_expression: Any,
    outcome: MixOutcome,
) -> pa.Table:
    con = storage.duckdb_connect(*shards)
    con.execute(
        "CREATE TABLE t AS SELECT *, row_number() OVER () AS _pos FROM read_parquet(?, union_by_name=true)", [shards]
    )
    columns = {r[0] for r in con.execute("DESCRIBE t").fetchall()}
    for name in PROVENANCE_COLUMNS:
        if name not in columns:
            default = f"'{source.source}'" if name == "provenance" else "NULL"
            con.execute(f"ALTER TABLE t ADD COLUMN {name} VARCHAR DEFAULT {default}")
    outcome.rows_in = con.execute("SELECT count(*) FROM t").fetchone()[0]
    con.execute("ALTER TABLE t ADD COLUMN _reason VARCHAR DEFAULT NULL")

    def drop(reason: str, keep_sql: str) -> None:
        con.execute(f"UPDATE t SET _reason = '{reason}' WHERE _reason IS NULL AND NOT ({keep_sql})")

    if "task" in columns:
        drop("task", "task IN (" + ", ".join("'" + t.replace("'", "''") + "'" for t in recipe.tasks) + ")")
    for rule in _rules_for(recipe, source):
        if any(c not in columns for c in rule.columns()):
            outcome.not_applied.append(rule.name)
            continue
        drop(rule.name, keep_expression(rule))
    con.register("cur", curated_ids)
    drop("in_curated", "id NOT IN (SELECT id FROM cur)")
    if "dedup_sha256" in columns and "dedup_sha256" in curated_ids.column_names:
        drop(
            "in_curated",
            "dedup_sha256 IS NULL OR dedup_sha256 NOT IN (SELECT dedup_sha256 FROM cur WHERE dedup_sha256 IS NOT NULL)",
        )
    key = "coalesce(dedup_sha256, id)" if "dedup_sha256" in columns else "id"
    con.execute(f"""UPDATE t SET _reason = 'duplicate' WHERE _reason IS NULL AND _pos NOT IN (
        SELECT min(_pos) FROM t WHERE _reason IS NULL GROUP BY {key})""")
    if source.max_rows is not None:
        con.execute(f"""UPDATE t SET _reason = 'max_rows' WHERE _reason IS NULL AND _pos NOT IN (
            SELECT _pos FROM t WHERE _reason IS NULL ORDER BY _pos LIMIT {int(source.max_rows)})""")
    outcome.by_reason = dict(
        con.execute("SELECT _reason, count(*) FROM t WHERE _reason IS NOT NULL GROUP BY 1 ORDER BY 2 DESC").fetchall()
    )
    return con.sql("SELECT * EXCLUDE (_pos, _reason) FROM t WHERE _reason IS NULL ORDER BY _pos").to_arrow_table()


def read_mix(ws: Workspace, recipe: str) -> list[dict[str, Any]]:
    """The mix entries of a selection (`selections/<recipe>/mix.json`), each with absolute `shards` paths of
    its complete shards; empty when the recipe mixes nothing."""
    import json

    path = ws.selection_dir(recipe) / MIX_MANIFEST
    if not path.is_file():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))["sources"]
    for entry in entries:
        entry["shards"] = [str(p) for p in ShardStore(ws.root / entry["dir"]).shard_paths()]
    return entries


def curated_keys(out_dir: Path) -> pa.Table:
    """`id` and `dedup_sha256` (when present) of the curated shards just written."""
    files = sorted(str(p) for p in out_dir.glob("part-*.parquet"))
    if not files:
        return pa.table({"id": pa.array([], pa.string()), "dedup_sha256": pa.array([], pa.string())})
    names = set(storage.read_schema(files[0]).names)
    cols = ["id"] + (["dedup_sha256"] if "dedup_sha256" in names else [])
    con = storage.duckdb_connect(out_dir)
    return con.sql(f"SELECT {', '.join(cols)} FROM read_parquet(?)", params=[files]).to_arrow_table()
