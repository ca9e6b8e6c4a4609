"""Selection with DuckDB: apply a recipe to the pool's score columns, write kept shards and a funnel.

Only score columns are read to decide (Parquet projection keeps image bytes out); kept
shards are then written shard by shard, so memory stays bounded by one shard. The output
folders are built beside the old ones and swapped in, so a crash never leaves half a selection.

Before anything is read, every pool shard is checked against the sha256 recorded when it was
written and the pool is compared with the rows its sources planned: a corrupt shard or a
missing partition is an error, never a smaller selection. Kept shards keep the pool's Arrow
schema, so each column's description and unit travel in the Parquet field metadata; they are
the only files in `curated/<recipe>/` (the funnel, rejected rows and manifest go to
`selections/<recipe>/`), so any Parquet reader pointed at the folder sees exactly the kept rows.
"""

from __future__ import annotations

import shutil
import time
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.recipes.recipe import Recipe, Rule
from flywheel.select.dedup_groups import groups_from_edges, multiview_edges, near_duplicate_edges
from flywheel.select.funnel import Funnel, RuleOutcome
from flywheel.select.mix import MIX_MANIFEST, curated_keys, select_mix
from flywheel.store.shards import ShardStore, write_json_atomic
from flywheel.workspace import FUNNEL_JSON, FUNNEL_TXT, RECIPE_JSON, REJECTED, Workspace, WorkspaceError

KEY = "id"  # unique per sample since schema v2 (checked below)
DETAIL_COLUMN = "broken_detail"  # the decoder's message, shown with rejected rows when the pool has it


@dataclass
class Selection:
    recipe: Recipe
    funnel: Funnel
    out_dir: Path  # curated/<recipe>/: the kept shards only
    meta_dir: Path | None = None  # selections/<recipe>/: funnel, rejected rows, recipe, manifest
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
    shards = workspace.require_complete_pool()
    con = duckdb.connect()
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    files = [str(p) for p in shards]
    pool_columns = set(pq.read_schema(files[0]).names)
    for f in files[1:]:
        pool_columns |= set(pq.read_schema(f).names)

    funnel = Funnel(recipe=recipe.name)
    captionless = _captionless(con, files, pool_columns)
    caption_columns = _caption_columns(workspace)
    if captionless:
        funnel.warnings.append(
            "no row of the pool has a caption: caption rules judged nothing (not applied); "
            "add captions or run `flywheel caption` on this selection"
        )
    applied: list[Rule] = []
    notes: dict[str, str] = {}
    for rule in recipe.rules:
        missing = [c for c in rule.columns() if c not in pool_columns]
        if rule.views and missing and rule.column in pool_columns:  # a pool scored before the view hashes
            rule = replace(rule, views=None)
            notes[rule.name] = f"view hashes {missing} not in the pool: full-view hashes only (re-score to add them)"
            missing = []
        if missing:
            funnel.not_applied.append(
                {"rule": rule.name, "why": f"column(s) {missing} not in the pool (was the filter run?)"}
            )
        elif captionless and caption_columns & set(rule.columns()):
            funnel.not_applied.append(
                {"rule": rule.name, "why": "no row has a caption, so the rule judged nothing (every row kept)"}
            )
        else:
            applied.append(rule)
    order_cols = [c for c in ("resolution_megapixels", "file_bytes", "id") if c in pool_columns]
    detail = [DETAIL_COLUMN] if DETAIL_COLUMN in pool_columns else []
    rule_columns = (c for r in applied for c in r.columns())
    needed = sorted({KEY, "uri", "partition", "task", *order_cols, *detail, *rule_columns})
    projection = ", ".join(_quote(c) for c in needed)
    con.execute(f"CREATE TABLE s AS SELECT {projection} FROM read_parquet(?, union_by_name=true)", [files])
    funnel.rows_in = con.execute("SELECT count(*) FROM s").fetchone()[0]
    _require_unique_ids(con, workspace)
    con.execute("ALTER TABLE s ADD COLUMN alive BOOLEAN DEFAULT TRUE")
    con.execute("ALTER TABLE s ADD COLUMN reason VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN reasons VARCHAR[] DEFAULT []")
    con.execute("ALTER TABLE s ADD COLUMN value VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN duplicate_of VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN duplicate_of_uri VARCHAR DEFAULT NULL")

    tasks = ", ".join(_literal(t) for t in recipe.tasks)
    _apply(con, funnel, RuleOutcome("task", f"task IN ({tasks})", column="task"), f"task IN ({tasks})")
    order_by = ", ".join(_valid_order(recipe.keep_best_by, pool_columns)) or "s.id"
    for rule in applied:
        outcome = RuleOutcome(rule.name, rule.describe(), column=rule.column)
        outcome.note = notes.get(rule.name, "")
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
    meta_dir = workspace.selection_dir(recipe.name)
    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp_meta = meta_dir.with_name(f".{meta_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp_dir.mkdir(parents=True)
    tmp_meta.mkdir(parents=True)
    _write_outputs(con, shards, tmp_dir, tmp_meta, recipe)
    extra: dict[str, Any] = {}
    if recipe.mix:
        outcomes = select_mix(workspace, recipe, curated_keys(tmp_dir), keep_expression)
        extra["mix"] = [o.to_json() for o in outcomes]
        write_json_atomic(tmp_meta / MIX_MANIFEST, {"recipe": recipe.name, "sources": extra["mix"]})
    else:
        shutil.rmtree(workspace.mix_dir(recipe.name), ignore_errors=True)  # no stale mix of an old recipe
    funnel.seconds = round(time.perf_counter() - started, 3)
    write_json_atomic(tmp_meta / FUNNEL_JSON, funnel.to_json())
    (tmp_meta / FUNNEL_TXT).write_text(funnel.to_text(), encoding="utf-8")
    write_json_atomic(tmp_meta / RECIPE_JSON, _recipe_json(recipe))
    # Data first, then bookkeeping: the funnel (what `curated_recipes` looks for) appears last.
    _swap_in(tmp_dir, out_dir)
    _swap_in(tmp_meta, meta_dir)
    con.close()
    return Selection(recipe=recipe, funnel=funnel, out_dir=out_dir, meta_dir=meta_dir, extra=extra)


def _require_unique_ids(con: duckdb.DuckDBPyConnection, workspace: Workspace) -> None:
    dup = con.execute(f"SELECT {KEY}, count(*) FROM s GROUP BY {KEY} HAVING count(*) > 1 LIMIT 1").fetchone()
    if dup:
        raise WorkspaceError(
            f"pool in {workspace.root} holds id {dup[0]} {dup[1]} times: ids must be unique per sample; "
            "was it scored by an older flywheel? score the source into a new workspace"
        )


def _value_sql(column: str | None) -> str:
    """The measured value a rule judged, as text for the rejected ledger (NULL when there is none)."""
    return f"CAST({_quote(column)} AS VARCHAR)" if column else "NULL"


def _captionless(con: duckdb.DuckDBPyConnection, files: list[str], pool_columns: set[str]) -> bool:
    """True when the pool has rows and not one of them has a caption."""
    if "caption" not in pool_columns:
        return False
    rows, with_caption = con.execute(
        "SELECT count(*), count(caption) FROM read_parquet(?, union_by_name=true)", [files]
    ).fetchone()
    return bool(rows) and with_caption == 0


def _caption_columns(workspace: Workspace) -> set[str]:
    """Columns computed from the caption, as the scoring run declared them in the pool manifest."""
    try:
        manifest = workspace.pool.read_manifest()
    except FileNotFoundError:
        manifest = {}
    return {"caption", *manifest.get("caption_columns", [])}


def _apply(con: duckdb.DuckDBPyConnection, funnel: Funnel, outcome: RuleOutcome, keep_sql: str) -> None:
    name = _literal(outcome.name)
    outcome.failed_total = con.execute(f"SELECT count(*) FROM s WHERE NOT ({keep_sql})").fetchone()[0]
    outcome.removed = con.execute(f"SELECT count(*) FROM s WHERE alive AND NOT ({keep_sql})").fetchone()[0]
    value = _value_sql(outcome.column)
    con.execute(
        f"UPDATE s SET reasons = list_append(reasons, {name}), "
        f"value = CASE WHEN alive THEN {value} ELSE value END, "
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
        hash_cols = ", ".join(_quote(c) for c in rule.columns())
        con.execute(f"CREATE OR REPLACE TEMP TABLE live AS SELECT {KEY}, {hash_cols} FROM s WHERE alive")
        if rule.views:
            edges = multiview_edges(con, "live", KEY, [_quote(c) for c in rule.columns()], rule.max_hamming)
        else:
            edges = near_duplicate_edges(con, "live", KEY, col, rule.max_hamming)
        groups = groups_from_edges(edges)
        con.execute("CREATE OR REPLACE TEMP TABLE grp (k VARCHAR, g VARCHAR)")
        if groups:
            con.executemany("INSERT INTO grp VALUES (?, ?)", list(groups.items()))
    con.execute(f"""CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT grp.k, grp.g, row_number() OVER (PARTITION BY grp.g ORDER BY {order_by}) AS rn,
               first_value(s.id) OVER (PARTITION BY grp.g ORDER BY {order_by}) AS best_id,
               first_value(s.uri) OVER (PARTITION BY grp.g ORDER BY {order_by}) AS best_uri
        FROM grp JOIN s ON s.{KEY} = grp.k""")
    outcome.removed = con.execute("SELECT count(*) FROM ranked WHERE rn > 1").fetchone()[0]
    outcome.failed_total = outcome.removed
    outcome.groups = con.execute("SELECT count(DISTINCT g) FROM ranked WHERE rn > 1").fetchone()[0]
    con.execute(f"""UPDATE s SET alive = FALSE, reason = {name}, reasons = list_append(reasons, {name}),
        value = CAST(s.{col} AS VARCHAR), duplicate_of = ranked.best_id, duplicate_of_uri = ranked.best_uri
        FROM ranked WHERE s.{KEY} = ranked.k AND ranked.rn > 1""")


def _valid_order(terms: list[str], columns: set[str]) -> list[str]:
    """Keep only ORDER BY terms whose column exists, qualified with the `s` table."""
    out = []
    for term in terms:
        column = term.split()[0]
        if column in columns:
            out.append(f"s.{_quote(column)} {' '.join(term.split()[1:])}".strip())
    return out


def _write_outputs(
    con: duckdb.DuckDBPyConnection, shards: list[Path], out_dir: Path, meta_dir: Path, recipe: Recipe
) -> None:
    store = ShardStore(out_dir, meta_root=meta_dir)
    for shard in shards:
        index = int(shard.stem.split("-")[1])
        keep = con.sql(f"SELECT {KEY} FROM s WHERE alive AND partition = ?", params=[index]).to_arrow_table()
        if not keep.num_rows:
            continue
        # pyarrow rather than DuckDB for the copy: it keeps the pool's schema and its field metadata.
        table = pq.read_table(shard)
        kept = table.filter(pc.is_in(table.column(KEY), value_set=keep.column(KEY)))
        store.write(index, kept, fingerprint=f"{recipe.name}:{shard.name}")
    whys = [(r.name, r.why or r.describe()) for r in recipe.rules]
    whys.append(("task", f"task is not one of the recipe's tasks {list(recipe.tasks)}"))
    con.execute("CREATE OR REPLACE TEMP TABLE whys (name VARCHAR, why VARCHAR)")
    con.executemany("INSERT INTO whys VALUES (?, ?)", whys)
    detail = f"s.{DETAIL_COLUMN}" if DETAIL_COLUMN in {r[0] for r in con.execute("DESCRIBE s").fetchall()} else "NULL"
    rejected = con.sql(f"""SELECT s.{KEY}, s.uri, s.partition, s.task, s.reason, s.reasons, s.value, whys.why,
            CAST({detail} AS VARCHAR) AS detail, s.duplicate_of, s.duplicate_of_uri
        FROM s LEFT JOIN whys ON whys.name = s.reason
        WHERE NOT s.alive ORDER BY s.partition, s.uri""").to_arrow_table()
    pq.write_table(rejected, meta_dir / REJECTED)
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
    try:
        path = workspace.require_selection(recipe) / REJECTED
    except WorkspaceError as exc:
        raise FileNotFoundError(str(exc)) from None
    if not path.is_file():
        raise FileNotFoundError(f"no rejected rows for {recipe!r} in {workspace.root}: re-run `flywheel select`")
    con = duckdb.connect()
    where = "WHERE reason = ? OR list_contains(reasons, ?)" if reason else ""
    params: list[Any] = [str(path)] + ([reason, reason] if reason else []) + [int(limit)]
    query = f"SELECT * FROM read_parquet(?) {where} ORDER BY partition, uri LIMIT ?"
    return con.sql(query, params=params).to_arrow_table()
