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
The recipe is checked against the pool first (flywheel.select.validate), and its SQL runs on a
connection whose file access is disabled and locked once the score columns are loaded. After the rules come
the rebalancing keys, in this order: `augment:` (flywheel.select.augment), `taxonomy:` caps and resampling
(flywheel.select.rebalance), then quotas; each rejects through the same accounting as a rule.
"""

from __future__ import annotations

import json
import math
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from flywheel.recipes.recipe import Recipe, Rule
from flywheel.recipes.sections import AUGMENT_COLUMN, CATEGORY, QUOTA, TAXONOMY_CAP, TAXONOMY_RESAMPLE, Category
from flywheel.select import rebalance
from flywheel.select.dedup_groups import groups_from_edges, multiview_edges, near_duplicate_edges
from flywheel.select.funnel import Funnel, RuleOutcome
from flywheel.select.mix import MIX_MANIFEST, curated_keys, select_mix
from flywheel.select.outputs import (
    DETAIL_COLUMN,
    describe_quotas,
    recipe_json,
    refuse_overwrite,
    swap_in,
    write_outputs,
)
from flywheel.select.semantic_dedup import read_embeddings, semantic_groups
from flywheel.select.sql import KEY, keep_expression, literal, quote
from flywheel.select.validate import RecipeError, check_recipe, check_taxonomy
from flywheel.store import fs as storage
from flywheel.store.shards import write_json_atomic
from flywheel.workspace import FUNNEL_JSON, FUNNEL_TXT, RECIPE_JSON, Workspace, WorkspaceError

TAXONOMY_COLUMN = "taxonomy_path"  # the funnel counts rows per top node of this column when the pool has it


@dataclass
class Selection:
    recipe: Recipe
    funnel: Funnel
    out_dir: Path  # curated/<recipe>/: the kept shards only
    meta_dir: Path | None = None  # selections/<recipe>/: funnel, rejected rows, recipe, manifest
    extra: dict[str, Any] = field(default_factory=dict)


def select(
    workspace: Workspace,
    recipe: Recipe,
    *,
    threads: int | None = None,
    known_columns: Mapping[str, str] | None = None,
    name: str | None = None,
    replace: bool = False,
    rehash: bool = False,
) -> Selection:
    """Apply `recipe` to the pool and write `curated/<name or recipe.name>/`.

    `known_columns` (column -> filter, from the filter registry) lets a rule whose filter was not run be
    reported as not applied; any other rule on a missing column is a RecipeError. When not given, the map the
    scoring run recorded in the pool manifest (`known_columns`) is used; a pool without one (built by hand,
    not by `flywheel score`) judges every missing column as not applied. An existing selection
    folder is replaced only when it was written by the same recipe and overrides, or with `replace`.
    `rehash` hashes every pool shard instead of trusting those unchanged since they last verified.
    """
    started = time.perf_counter()
    shards = workspace.require_complete_pool(rehash=rehash)
    sel_name = name or recipe.name
    out_dir = workspace.curated_dir(sel_name)
    meta_dir = workspace.selection_dir(sel_name)
    files = [str(p) for p in shards]
    con = storage.duckdb_connect(*files)
    if threads:
        con.execute(f"SET threads = {int(threads)}")
    schemas = [storage.read_schema(f) for f in files]
    pool_schema = pa.unify_schemas(schemas, promote_options="permissive")
    pool_columns = set(pool_schema.names)
    if known_columns is None:
        known_columns = _recorded_known_columns(workspace)
    checked = check_recipe(recipe, pool_schema, known_columns)
    taxonomy_skip = check_taxonomy(recipe, pool_schema, known_columns)
    taxonomy_reads = recipe.taxonomy.columns() if recipe.taxonomy is not None and taxonomy_skip is None else []
    funnel_taxonomy = recipe.taxonomy.column if recipe.taxonomy is not None else TAXONOMY_COLUMN
    funnel_taxonomy_cols = [funnel_taxonomy] if funnel_taxonomy in pool_columns else []
    refuse_overwrite(meta_dir, recipe, replace)

    funnel = Funnel(recipe=recipe.name)
    funnel.not_applied.extend(checked.not_applied)
    captionless = _captionless(con, files, pool_columns)
    caption_columns = _caption_columns(workspace)
    if captionless:
        funnel.warnings.append(
            "no row of the pool has a caption: caption rules judged nothing (not applied); "
            "add captions or run `flywheel caption` on this selection"
        )
    applied: list[Rule] = []
    notes: dict[str, str] = dict(checked.notes)
    for rule in checked.applied:
        if captionless and caption_columns & set(rule.columns()):
            funnel.not_applied.append(
                {"rule": rule.name, "why": "no row has a caption, so the rule judged nothing (every row kept)"}
            )
        else:
            applied.append(rule)
    order_cols = [c for c in ("resolution_megapixels", "file_bytes", "id") if c in pool_columns]
    order_cols += [t.split()[0] for t in recipe.keep_best_by if t.split()[0] in pool_columns]
    detail = [DETAIL_COLUMN] if DETAIL_COLUMN in pool_columns else []
    # Embedding columns stay out of the table: semantic dedup reads them from the shards itself, only for live rows.
    embedded = {r.column for r in applied if r.dedup == "semantic"}
    read = {KEY, "uri", "partition", "task", *order_cols, *detail, *checked.columns}
    needed = sorted(read.union(taxonomy_reads, funnel_taxonomy_cols) - embedded)
    projection = ", ".join(quote(c) for c in needed)
    con.execute(f"CREATE TABLE s AS SELECT {projection} FROM read_parquet(?, union_by_name=true)", [files])
    # From here on the recipe's SQL runs: no file may be read or written, and nothing may turn that back on.
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")
    funnel.rows_in = con.execute("SELECT count(*) FROM s").fetchone()[0]
    _require_unique_ids(con, workspace)
    con.execute("ALTER TABLE s ADD COLUMN alive BOOLEAN DEFAULT TRUE")
    con.execute("ALTER TABLE s ADD COLUMN reason VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN reasons VARCHAR[] DEFAULT []")
    con.execute("ALTER TABLE s ADD COLUMN value VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN duplicate_of VARCHAR DEFAULT NULL")
    con.execute("ALTER TABLE s ADD COLUMN duplicate_of_uri VARCHAR DEFAULT NULL")
    if recipe.categories:
        _assign_categories(con, checked.categories, recipe)
        funnel.warnings.extend(checked.category_warnings)
    if funnel_taxonomy_cols:
        rebalance.add_top_node(con, funnel_taxonomy)

    tasks = ", ".join(literal(t) for t in recipe.tasks)
    _apply(con, funnel, RuleOutcome("task", f"task IN ({tasks})", column="task"), f"task IN ({tasks})")
    order_by = ", ".join(_valid_order(recipe.keep_best_by, pool_columns)) or "s.id"
    for rule in applied:
        outcome = RuleOutcome(rule.name, rule.describe(), column=rule.column)
        outcome.note = notes.get(rule.name, "")
        if rule.dedup:
            _dedup(con, rule, order_by, outcome, files)
            funnel.rules.append(outcome)
            continue
        if rule.top is not None:
            _apply(con, funnel, outcome, _rank_top(con, rule))
            continue
        if rule.column:
            outcome.null_rows = con.execute(f"SELECT count(*) FROM s WHERE {quote(rule.column)} IS NULL").fetchone()[0]
            if outcome.null_rows == funnel.rows_in and rule.is_null is None:
                outcome.note = "column is null for every row: the rule could not judge anything"
        try:
            _apply(con, funnel, outcome, keep_expression(rule))
        except duckdb.Error as exc:  # a keep expression that parses but cannot run on these columns
            first = str(exc).splitlines()[0]
            raise RecipeError(f"recipe {recipe.name}: rule {rule.name!r} cannot be evaluated: {first}") from None

    if recipe.augment is not None:
        _augment(con, recipe, workspace, funnel)
    if recipe.taxonomy is not None and taxonomy_skip is not None:
        funnel.not_applied.append({"rule": "taxonomy", "why": taxonomy_skip})
    elif recipe.taxonomy is not None:
        _taxonomy(con, recipe, funnel)
    if recipe.quotas is not None and recipe.quotas.mode == "select":
        outcome = RuleOutcome(QUOTA, describe_quotas(recipe), column=CATEGORY)
        _apply(con, funnel, outcome, _quota_keep(con, recipe, order_by))
    elif recipe.quotas is not None:  # mode sample: every row stays, the trainer draws the categories at their shares
        funnel.rebalance["quotas"] = {"mode": "sample", "shares": dict(recipe.quotas.shares)}
    if recipe.categories:
        funnel.by_category = {
            str(c): {"in": int(n), "kept": int(k)}
            for c, n, k in con.execute(
                "SELECT category, count(*), count(*) FILTER (WHERE alive) FROM s GROUP BY 1 ORDER BY 1"
            ).fetchall()
        }
    if funnel_taxonomy_cols:
        funnel.by_taxonomy = {
            str(node or "(none)"): {"in": int(n), "kept": int(k)}
            for node, n, k in con.execute(
                f"SELECT {rebalance.TOP_NODE}, count(*), count(*) FILTER (WHERE alive) FROM s GROUP BY 1 "
                "ORDER BY 1 NULLS LAST"
            ).fetchall()
        }
    funnel.kept = con.execute("SELECT count(*) FROM s WHERE alive").fetchone()[0]
    funnel.rejected = funnel.rows_in - funnel.kept
    funnel.by_reason = dict(
        con.execute("SELECT reason, count(*) FROM s WHERE NOT alive GROUP BY reason ORDER BY 2 DESC").fetchall()
    )

    tmp_dir = out_dir.with_name(f".{out_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp_meta = meta_dir.with_name(f".{meta_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp_dir.mkdir(parents=True)
    tmp_meta.mkdir(parents=True)
    write_outputs(con, shards, tmp_dir, tmp_meta, recipe)
    extra: dict[str, Any] = {}
    if recipe.mix:
        outcomes = select_mix(workspace, recipe, curated_keys(tmp_dir), keep_expression)
        extra["mix"] = [o.to_json() for o in outcomes]
        write_json_atomic(tmp_meta / MIX_MANIFEST, {"recipe": recipe.name, "sources": extra["mix"]})
    else:
        storage.rmtree(workspace.mix_dir(sel_name), ignore_errors=True)  # no stale mix of an old recipe
    funnel.seconds = round(time.perf_counter() - started, 3)
    write_json_atomic(tmp_meta / FUNNEL_JSON, funnel.to_json())
    (tmp_meta / FUNNEL_TXT).write_text(funnel.to_text(), encoding="utf-8")
    write_json_atomic(tmp_meta / RECIPE_JSON, recipe_json(recipe))
    # Data first, then bookkeeping: the funnel (what `curated_recipes` looks for) appears last.
    swap_in(tmp_dir, out_dir)
    swap_in(tmp_meta, meta_dir)
    con.close()
    return Selection(recipe=recipe, funnel=funnel, out_dir=out_dir, meta_dir=meta_dir, extra=extra)


def _recorded_known_columns(workspace: Workspace) -> Mapping[str, str] | None:
    """The column -> filter map `flywheel score` wrote into the pool manifest (the core knows no filter);
    None for a pool written without the scoring step."""
    path = workspace.pool.manifest_path
    return json.loads(path.read_text(encoding="utf-8")).get("known_columns") if path.is_file() else None


def _require_unique_ids(con: duckdb.DuckDBPyConnection, workspace: Workspace) -> None:
    dup = con.execute(f"SELECT {KEY}, count(*) FROM s GROUP BY {KEY} HAVING count(*) > 1 LIMIT 1").fetchone()
    if dup:
        raise WorkspaceError(
            f"pool in {workspace.root} holds id {dup[0]} {dup[1]} times: ids must be unique per sample; "
            "was it scored by an older flywheel? score the source into a new workspace"
        )


def _value_sql(column: str | None) -> str:
    """The measured value a rule judged, as text for the rejected ledger (NULL when there is none)."""
    return f"CAST({quote(column)} AS VARCHAR)" if column else "NULL"


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
    name = literal(outcome.name)
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


def _dedup(con: duckdb.DuckDBPyConnection, rule: Rule, order_by: str, outcome: RuleOutcome, files: list[str]) -> None:
    col = quote(rule.column or "")
    name = literal(rule.name)
    if rule.best_by:  # the rule's quality column first, then the recipe's ordering (most pixels, largest file)
        order_by = f"s.{quote(rule.best_by)} DESC NULLS LAST, {order_by}"
    semantic = None
    if rule.dedup == "semantic":
        semantic = _semantic_grp(con, rule, outcome, files)
    elif rule.dedup == "exact":
        con.execute(f"""CREATE OR REPLACE TEMP TABLE grp AS
            SELECT {KEY} AS k, {col} AS g FROM s WHERE alive AND {col} IS NOT NULL""")
    else:
        hash_cols = ", ".join(quote(c) for c in rule.columns())
        con.execute(f"CREATE OR REPLACE TEMP TABLE live AS SELECT {KEY}, {hash_cols} FROM s WHERE alive")
        if rule.views:
            edges = multiview_edges(con, "live", KEY, [quote(c) for c in rule.columns()], rule.max_hamming)
        else:
            edges = near_duplicate_edges(con, "live", KEY, col, rule.max_hamming)
        groups = groups_from_edges(edges)
        con.execute("CREATE OR REPLACE TEMP TABLE grp (k VARCHAR, g VARCHAR)")
        if groups:
            con.executemany("INSERT INTO grp VALUES (?, ?)", list(groups.items()))
    value = "NULL::VARCHAR" if semantic is not None else f"CAST(s.{col} AS VARCHAR)"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE ranked AS
        SELECT grp.k, grp.g, row_number() OVER (PARTITION BY grp.g ORDER BY {order_by}) AS rn,
               first_value(s.id) OVER (PARTITION BY grp.g ORDER BY {order_by}) AS best_id,
               first_value(s.uri) OVER (PARTITION BY grp.g ORDER BY {order_by}) AS best_uri,
               {value} AS value
        FROM grp JOIN s ON s.{KEY} = grp.k""")
    # fetchall: a fully read result, so the connection may register the semantic ledger's Arrow tables next
    outcome.removed, outcome.groups = con.execute(
        "SELECT count(*), count(DISTINCT g) FROM ranked WHERE rn > 1"
    ).fetchall()[0]
    outcome.failed_total = outcome.removed
    if semantic is not None:
        _semantic_distances(con, *semantic)
    con.execute(f"""UPDATE s SET alive = FALSE, reason = {name}, reasons = list_append(reasons, {name}),
        value = ranked.value, duplicate_of = ranked.best_id, duplicate_of_uri = ranked.best_uri
        FROM ranked WHERE s.{KEY} = ranked.k AND ranked.rn > 1""")


def _assign_categories(con: duckdb.DuckDBPyConnection, usable: list[Category], recipe: Recipe) -> None:
    """Write each row's category: the first whose condition holds (NULL counts as false), else the default."""
    default = recipe.categories[-1].name
    cases = " ".join(f"WHEN COALESCE(({c.when}), FALSE) THEN {literal(c.name)}" for c in usable if c.when)
    sql = f"CASE {cases} ELSE {literal(default)} END" if cases else literal(default)
    con.execute(f"ALTER TABLE s ADD COLUMN {CATEGORY} VARCHAR")
    try:
        con.execute(f"UPDATE s SET {CATEGORY} = {sql}")
    except duckdb.Error as exc:  # a condition that parses but cannot run on these columns
        first = str(exc).splitlines()[0]
        raise RecipeError(f"recipe {recipe.name}: categories cannot be evaluated: {first}") from None


def _rank_top(con: duckdb.DuckDBPyConnection, rule: Rule) -> str:
    """Rank the live rows by the rule's column (within `by`) and return the keep condition of `top`.

    Rows already rejected are not ranked (they pass this rule); the kept count per group is ceil(top * n),
    ties broken by id so the selection is deterministic.
    """
    col = quote(rule.column or "")
    group = quote(rule.by) if rule.by else "1"
    direction = "ASC" if rule.ascending else "DESC"
    flag = quote(f"_top_{rule.name}")
    con.execute(f"ALTER TABLE s ADD COLUMN {flag} BOOLEAN DEFAULT NULL")
    con.execute(f"""UPDATE s SET {flag} = r.ok FROM (
            SELECT {KEY} AS k, row_number() OVER (PARTITION BY {group} ORDER BY {col} {direction}, {KEY})
                <= ceil({float(rule.top)} * count(*) OVER (PARTITION BY {group})) AS ok
            FROM s WHERE alive AND {col} IS NOT NULL) r
        WHERE s.{KEY} = r.k""")
    on_null = "TRUE" if rule.on_null == "keep" else "FALSE"
    return f"CASE WHEN {col} IS NULL THEN {on_null} ELSE COALESCE({flag}, TRUE) END"


def _taxonomy(con: duckdb.DuckDBPyConnection, recipe: Recipe, funnel: Funnel) -> None:
    """The recipe's `taxonomy:`: per-node caps, then the temperature resampling (flywheel.select.rebalance)."""
    tax = recipe.taxonomy
    assert tax is not None
    cap_text, resample_text = rebalance.describe(tax)
    rebalance.rank_in_nodes(con, tax, recipe.seed)
    report: dict[str, Any] = {"column": tax.column, "level": tax.level, "seed": recipe.seed}
    if tax.cap is not None or tax.caps:
        _apply(con, funnel, RuleOutcome(TAXONOMY_CAP, cap_text, column=tax.column), rebalance.cap_keep(con, tax))
    if tax.total is not None:
        keep, targets = rebalance.resample_keep(con, tax, recipe.seed)
        _apply(con, funnel, RuleOutcome(TAXONOMY_RESAMPLE, resample_text, column=tax.column), keep)
        report.update(temperature=tax.temperature, total=tax.total, targets=targets)
    funnel.rebalance["taxonomy"] = report


def _augment(con: duckdb.DuckDBPyConnection, recipe: Recipe, workspace: Workspace, funnel: Funnel) -> None:
    """The recipe's `augment:`: move retrieved live rows into a category below its share (flywheel.select.augment)."""
    from flywheel.reservoir import list_reservoirs, reservoir_workspace
    from flywheel.select import augment

    spec = recipe.augment
    assert spec is not None
    con.execute(f"ALTER TABLE s ADD COLUMN {AUGMENT_COLUMN} VARCHAR DEFAULT NULL")
    counts = con.execute(f"SELECT {CATEGORY}, count(*) FROM s WHERE alive GROUP BY 1").fetchall()
    live = {str(c): int(n) for c, n in counts}
    total, have = sum(live.values()), live.get(spec.category, 0)
    report: dict[str, Any] = {"category": spec.category, "min_share": spec.min_share, "rows_before": have, "moved": 0}
    need = math.ceil(spec.min_share * total - have - 1e-9) if total else 0
    if need <= 0:
        report["note"] = f"{have} of {total} live rows ({have / total if total else 0:.1%}) already at its share"
        funnel.rebalance["augment"] = report
        return
    reservoirs = [reservoir_workspace(workspace, r.name) for r in list_reservoirs(workspace)]
    hits = augment.search(workspace, spec, recipe.name, augment.query_embedders(workspace), reservoirs)
    found = pa.table(
        {
            "k": pa.array(list(hits.pool), pa.string()),
            "sim": pa.array([h[0] for h in hits.pool.values()], pa.float64()),
            "q": pa.array([h[1] for h in hits.pool.values()], pa.string()),
        }
    )
    con.register("augment_hits", found)
    con.execute(f"""CREATE OR REPLACE TEMP TABLE augment_moved AS
        SELECT s.{KEY} AS k, h.q, s.{CATEGORY} AS was FROM s JOIN augment_hits h ON h.k = s.{KEY}
        WHERE s.alive AND s.{CATEGORY} <> {literal(spec.category)}
        ORDER BY h.sim DESC, s.{KEY} LIMIT {int(need)}""")
    con.unregister("augment_hits")
    con.execute(f"""UPDATE s SET {CATEGORY} = {literal(spec.category)}, {AUGMENT_COLUMN} = m.q
        FROM augment_moved m WHERE s.{KEY} = m.k""")
    moved_from = dict(con.execute("SELECT was, count(*) FROM augment_moved GROUP BY 1 ORDER BY 1").fetchall())
    moved = sum(moved_from.values())
    after = (have + moved) / total
    report.update(
        moved=moved,
        moved_from=moved_from,
        candidates=len(hits.pool),
        searched=hits.searched,
        reservoir_hits=hits.reservoirs,
        share_after=round(after, 4),
    )
    short = "" if moved >= need else f"; {need - moved} short: the index found no more live rows of other categories"
    report["note"] = (
        f"{have} of {total} live rows ({have / total:.1%}) < {spec.min_share:.0%}: moved {moved} retrieved rows in "
        f"({after:.1%}){short}"
    )
    funnel.rebalance["augment"] = report


def _quota_keep(con: duckdb.DuckDBPyConnection, recipe: Recipe, order_by: str) -> str:
    """Keep condition of the recipe's quotas: the largest total with the stated shares, best rows first."""
    assert recipe.quotas is not None
    shares = recipe.quotas.shares
    live = dict(con.execute(f"SELECT {CATEGORY}, count(*) FROM s WHERE alive GROUP BY 1").fetchall())
    limits = [live.get(c, 0) / share for c, share in shares.items() if share > 0]
    total = min(limits) if limits else 0.0
    con.execute("CREATE OR REPLACE TEMP TABLE quota (c VARCHAR, n BIGINT)")
    con.executemany("INSERT INTO quota VALUES (?, ?)", [(c, int(total * share + 1e-9)) for c, share in shares.items()])
    con.execute("ALTER TABLE s ADD COLUMN _quota_ok BOOLEAN DEFAULT NULL")
    con.execute(f"""UPDATE s SET _quota_ok = r.rn <= quota.n FROM (
            SELECT s.{KEY} AS k, s.{CATEGORY} AS c,
                   row_number() OVER (PARTITION BY s.{CATEGORY} ORDER BY {order_by}) AS rn
            FROM s WHERE alive) r JOIN quota ON quota.c = r.c
        WHERE s.{KEY} = r.k""")
    return "COALESCE(_quota_ok, TRUE)"


def _semantic_distances(con: duckdb.DuckDBPyConnection, ids: pa.Array, x: np.ndarray) -> None:
    """Set `ranked.value` of each removed row to its cosine distance from the kept member (4 decimals).

    An embedding is no readable value for the rejected ledger; the distance says how close the duplicate was
    (it can exceed eps: a group is connected through chains of pairs under eps).
    """
    con.register("semantic_index", pa.table({"k": ids, "i": pa.array(np.arange(len(ids)), pa.int64())}))
    pairs = con.sql("""SELECT r.k, a.i AS a, b.i AS b FROM ranked r
        JOIN semantic_index a ON a.k = r.k JOIN semantic_index b ON b.k = r.best_id WHERE r.rn > 1""").to_arrow_table()
    con.unregister("semantic_index")
    a = pairs.column("a").to_numpy()
    b = pairs.column("b").to_numpy()
    dist = 1.0 - np.einsum("ij,ij->i", x[a], x[b]) if len(a) else np.zeros(0)
    text = pa.array([f"{d:.4f}" for d in np.maximum(dist, 0.0)], pa.string())
    con.register("semantic_distances", pa.table({"k": pairs.column("k"), "d": text}))
    con.execute("UPDATE ranked SET value = d.d FROM semantic_distances d WHERE ranked.k = d.k")
    con.unregister("semantic_distances")


def _semantic_grp(
    con: duckdb.DuckDBPyConnection, rule: Rule, outcome: RuleOutcome, files: list[str]
) -> tuple[pa.Array, np.ndarray]:
    """Fill `grp` with the semantic groups among live rows; returns their ids and embeddings for the ledger.

    The embeddings are read with pyarrow from the shards (the connection has file access disabled), only the
    id and embedding columns and only for live rows.
    """
    live = con.sql(f"SELECT {KEY} FROM s WHERE alive").to_arrow_table().column(KEY).combine_chunks()
    ids, x = read_embeddings(files, KEY, rule.column or "", live)
    groups, stats = semantic_groups(x, rule.semantic_eps, rule.clusters)
    outcome.null_rows = len(live) - len(ids)
    outcome.note = "; ".join(n for n in (outcome.note, stats.note()) if n)
    keys = list(groups)
    grp = pa.table(
        {
            "k": ids.take(pa.array(keys, pa.int64())) if keys else pa.array([], pa.string()),
            "g": ids.take(pa.array([groups[i] for i in keys], pa.int64())) if keys else pa.array([], pa.string()),
        }
    )
    con.register("semantic_groups", grp)
    con.execute("CREATE OR REPLACE TEMP TABLE grp AS SELECT k, g FROM semantic_groups")
    con.unregister("semantic_groups")
    return ids, x


def _valid_order(terms: list[str], columns: set[str]) -> list[str]:
    """Keep only ORDER BY terms whose column exists, qualified with the `s` table."""
    out = []
    for term in terms:
        column = term.split()[0]
        if column in columns:
            out.append(f"s.{quote(column)} {' '.join(term.split()[1:])}".strip())
    return out
