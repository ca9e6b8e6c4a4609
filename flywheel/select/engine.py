"""Selection with DuckDB: apply a recipe to the pool's score columns, write kept shards and a funnel.

Only score columns are read to decide (Parquet projection keeps image bytes out); kept
shards are then written shard by shard, so memory stays bounded by one shard. The output
folder is built beside the old one and swapped in, so a crash never leaves half a selection.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.errors import MissingInput, UserError
from flywheel.recipes.recipe import Recipe, Rule
from flywheel.select.dedup_groups import groups_from_edges, near_duplicate_edges
from flywheel.select.funnel import Funnel, RuleOutcome
from flywheel.store.shards import ShardStore, write_json_atomic
from flywheel.workspace import Workspace

KEY = "uri"


@dataclass
class Selection:
    recipe: Recipe
    funnel: Funnel
    out_dir: Path
    extra: dict[str, Any] = field(default_factory=dict)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    return repr(value)


def keep_expression(rule: Rule) -> str:
    """SQL that is TRUE when the row passes a threshold rule (NULL column -> rule.on_null)."""
    col = _quote(rule.column) if rule.column else None
    parts = []
    if rule.min is not None:
        parts.append(f"{col} >= {_literal(rule.min)}")
    if rule.max is not None:
        parts.append(f"{col} <= {_literal(rule.max)}")
    if rule.values_in is not None:
        parts.append(f"{col} IN ({', '.join(_literal(v) for v in rule.values_in)})")
    if rule.not_in is not None:
        parts.append(f"{col} NOT IN ({', '.join(_literal(v) for v in rule.not_in)})")
    if rule.keep:
        parts.append(f"({rule.keep})")
    if rule.is_null is not None:
        null_test = f"{col} IS NULL" if rule.is_null else f"{col} IS NOT NULL"
        return " AND ".join([null_test, *parts]) if parts else null_test
    expr = " AND ".join(parts) or "TRUE"
    if col is None:
        return f"COALESCE({expr}, {'TRUE' if rule.on_null == 'keep' else 'FALSE'})"
    return f"CASE WHEN {col} IS NULL THEN {'TRUE' if rule.on_null == 'keep' else 'FALSE'} ELSE ({expr}) END"


def select(workspace: Workspace, recipe: Recipe, *, threads: int | None = None) -> Selection:
    started = time.perf_counter()
    shards = workspace.require_pool()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    files = [str(p) for p in shards]
    pool_columns = set(pq.read_schema(files[0]).names)
    for f in files[1:]:
        pool_columns |= set(pq.read_schema(f).names)

    funnel = Funnel(recipe=recipe.name)
    applied: list[Rule] = []
    for rule in recipe.rules:
        missing = [c for c in rule.columns() if c not in pool_columns]
        if missing:
            funnel.not_applied.append(
                {"rule": rule.name, "why": f"column(s) {missing} not in the pool (was the filter run?)"}
            )
        else:
            applied.append(rule)
    order_cols = [c for c in ("resolution_megapixels", "file_bytes", "id") if c in pool_columns]
    needed = sorted({KEY, "id", "partition", "task", *order_cols, *(c for r in applied for c in r.columns())})
    projection = ", ".join(_quote(c) for c in needed)
    con.execute(f"CREATE TABLE s AS SELECT {projection} FROM read_parquet(?, union_by_name=true)", [files])
    funnel.rows_in = con.execute("SELECT count(*) FROM s").fetchone()[0]
    con.execute("ALTER TABLE s ADD COLUMN alive BOOLEAN DEFAULT TRUE")
    con.execute("ALTER TABLE s ADD COLUMN reason VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN reasons VARCHAR[] DEFAULT []")
    con.execute("ALTER TABLE s ADD COLUMN duplicate_of VARCHAR DEFAULT NULL")

    tasks = ", ".join(_literal(t) for t in recipe.tasks)
    _apply(con, funnel, RuleOutcome("task", f"task IN ({tasks})"), f"task IN ({tasks})")
    order_by = ", ".join(_valid_order(recipe.keep_best_by, pool_columns)) or "s.id"
    for rule in applied:
        outcome = RuleOutcome(rule.name, rule.describe(), column=rule.column)
        if rule.dedup:
            _dedup(con, rule, order_by, outcome)
            funnel.rules.append(outcome)
            continue
        if rule.column:
            outcome.null_rows = con.execute(f"SELECT count(*) FROM s WHERE {_quote(rule.column)} IS NULL").fetchone()[0]
            if outcome.null_rows == funnel.rows_in and rule.is_null is None:
                outcome.note = "column is null for every row: the rule could not judge anything"
        _apply(con, funnel, outcome, keep_expression(rule))

    funnel.kept = con.execute("SELECT count(*) FROM s WHERE alive").fetchone()[0]
    funnel.rejected = funnel.rows_in - funnel.kept
    funnel.by_reason = dict(
        con.execute("SELECT reason, count(*) FROM s WHERE NOT alive GROUP BY reason ORDER BY 2 DESC").fetchall()
    )

    out_dir = workspace.curated_dir(recipe.name)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp_dir.mkdir(parents=True)
    _write_outputs(con, shards, tmp_dir, recipe)
    funnel.seconds = round(time.perf_counter() - started, 3)
    write_json_atomic(tmp_dir / "funnel.json", funnel.to_json())
    (tmp_dir / "funnel.txt").write_text(funnel.to_text(), encoding="utf-8")
    write_json_atomic(tmp_dir / "recipe.json", _recipe_json(recipe))
    _swap_in(tmp_dir, out_dir)
    con.close()
    return Selection(recipe=recipe, funnel=funnel, out_dir=out_dir)


def _apply(con: duckdb.DuckDBPyConnection, funnel: Funnel, outcome: RuleOutcome, keep_sql: str) -> None:
    name = _literal(outcome.name)
    outcome.failed_total = con.execute(f"SELECT count(*) FROM s WHERE NOT ({keep_sql})").fetchone()[0]
    outcome.removed = con.execute(f"SELECT count(*) FROM s WHERE alive AND NOT ({keep_sql})").fetchone()[0]
    con.execute(
        f"UPDATE s SET reasons = list_append(reasons, {name}), "
        f"reason = CASE WHEN alive THEN {name} ELSE reason END, alive = FALSE WHERE NOT ({keep_sql})"
    )
    if outcome.name != "task" or outcome.removed:
        funnel.rules.append(outcome)


def _dedup(con: duckdb.DuckDBPyConnection, rule: Rule, order_by: str, outcome: RuleOutcome) -> None:
    col = _quote(rule.column or "")
    name = _literal(rule.name)
    if rule.dedup == "exact":
        con.execute(f"""CREATE OR REPLACE TEMP TABLE grp AS
            SELECT {KEY} AS k, {col} AS g FROM s WHERE alive AND {col} IS NOT NULL""")
    else:
        con.execute(f"CREATE OR REPLACE TEMP TABLE live AS SELECT {KEY}, {col} FROM s WHERE alive")
        edges = near_duplicate_edges(con, "live", KEY, col, rule.max_hamming)
        groups = groups_from_edges(edges)
        con.execute("CREATE OR REPLACE TEMP TABLE grp (k VARCHAR, g VARCHAR)")
        if groups:
            con.executemany("INSERT INTO grp VALUES (?, ?)", list(groups.items()))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT grp.k, grp.g, row_number() OVER (PARTITION BY grp.g ORDER BY {order_by}) AS rn,
               first_value(s.id) OVER (PARTITION BY grp.g ORDER BY {order_by}) AS best_id
        FROM grp JOIN s ON s.{KEY} = grp.k""")
    outcome.removed = con.execute("SELECT count(*) FROM ranked WHERE rn > 1").fetchone()[0]
    outcome.failed_total = outcome.removed
    outcome.groups = con.execute("SELECT count(DISTINCT g) FROM ranked WHERE rn > 1").fetchone()[0]
    con.execute(f"""UPDATE s SET alive = FALSE, reason = {name}, reasons = list_append(reasons, {name}),
        duplicate_of = ranked.best_id FROM ranked WHERE s.{KEY} = ranked.k AND ranked.rn > 1""")


def _valid_order(terms: list[str], columns: set[str]) -> list[str]:
    """Keep only ORDER BY terms whose column exists, qualified with the `s` table."""
    out = []
    for term in terms:
        column = term.split()[0]
        if column in columns:
            out.append(f"s.{_quote(column)} {' '.join(term.split()[1:])}".strip())
    return out


def _write_outputs(con: duckdb.DuckDBPyConnection, shards: list[Path], out_dir: Path, recipe: Recipe) -> None:
    store = ShardStore(out_dir)
    for shard in shards:
        index = int(shard.stem.split("-")[1])
        kept = con.sql(
            f"""SELECT p.* FROM read_parquet(?) p
            WHERE p.{KEY} IN (SELECT {KEY} FROM s WHERE alive AND partition = ?)""",
            params=[str(shard), index],
        ).to_arrow_table()
        if kept.num_rows:
            store.write(index, kept, fingerprint=f"{recipe.name}:{shard.name}")
    rejected = con.sql(f"""SELECT {KEY}, id, partition, task, reason, reasons, duplicate_of
        FROM s WHERE NOT alive ORDER BY partition, {KEY}""").to_arrow_table()
    pq.write_table(rejected, out_dir / "rejected.parquet")
    store.write_manifest({"recipe": recipe.name, "stage": recipe.stage, "resolution": recipe.resolution})


def _recipe_json(recipe: Recipe) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(recipe)


def _swap_in(tmp_dir: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
    tmp_dir.rename(out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=False)


def read_rejected(workspace: Workspace, recipe: str, reason: str | None, limit: int) -> pa.Table:
    path = workspace.curated_dir(recipe) / "rejected.parquet"
    if not path.is_file():
        raise MissingInput(f"no selection {recipe!r} in {workspace.root}: run `flywheel select --recipe {recipe}`")
    con = duckdb.connect()
    if reason is not None:  # a typo must not look like "nothing was rejected for that reason"
        found = con.sql(
            "SELECT DISTINCT r FROM (SELECT reason AS r FROM read_parquet(?) "
            "UNION ALL SELECT unnest(reasons) AS r FROM read_parquet(?)) WHERE r IS NOT NULL",
            params=[str(path), str(path)],
        ).fetchall()
        funnel = workspace.curated_dir(recipe) / "funnel.json"
        rules = [r["name"] for r in json.loads(funnel.read_text())["rules"]] if funnel.is_file() else []
        valid = sorted({str(r[0]) for r in found} | set(rules))
        if reason not in valid:
            raise UserError(f"unknown reason {reason!r} for selection {recipe!r}; valid reasons: {', '.join(valid)}")
    where = "WHERE reason = ? OR list_contains(reasons, ?)" if reason else ""
    params: list[Any] = [str(path)] + ([reason, reason] if reason else []) + [int(limit)]
    query = f"SELECT * FROM read_parquet(?) {where} ORDER BY partition, {KEY} LIMIT ?"
    return con.sql(query, params=params).to_arrow_table()
