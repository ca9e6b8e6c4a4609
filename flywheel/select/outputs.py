"""What a selection writes and reads back: kept shards, the rejected ledger, the manifest, the folder swap.

`flywheel.select.engine` decides in DuckDB which rows stay; this module turns that decision into files
(`curated/<recipe>/` holding only the kept shards, `selections/<recipe>/` the bookkeeping) and lists the
rejected rows for `flywheel rejected`.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.errors import MissingInput, UserError
from flywheel.recipes.recipe import Recipe
from flywheel.recipes.sections import AUGMENT_COLUMN, CATEGORY, QUOTA, TAXONOMY_CAP, TAXONOMY_RESAMPLE
from flywheel.select import rebalance
from flywheel.select.sql import KEY, quote
from flywheel.store import fs as storage
from flywheel.store.images import POOL_ONLY_COLUMNS, reference_form
from flywheel.store.shards import ShardStore
from flywheel.workspace import FUNNEL_JSON, RECIPE_JSON, REJECTED, Workspace, WorkspaceError

CATEGORY_FIELD = pa.field(
    CATEGORY,
    pa.string(),
    metadata={
        "description": "Category the recipe's `categories:` assigned (first condition that holds; the last is "
        "the default); quotas and `top ... by: category` rules count within it.",
        "unit": "",
        "owner": "recipe",
    },
)
AUGMENT_FIELD = pa.field(
    AUGMENT_COLUMN,
    pa.string(),
    metadata={
        "description": "The keyword or image query (`image:<file>`) of the recipe's `augment:` that moved this row "
        "into its category through the retrieval index; null for rows the category conditions placed.",
        "unit": "",
        "owner": "recipe",
    },
)
DETAIL_COLUMN = "broken_detail"  # the decoder's message, shown with rejected rows when the pool has it


class SelectionExistsError(UserError):
    """The selection folder holds another recipe's (or other overrides') result; nothing is overwritten."""


def describe_quotas(recipe: Recipe) -> str:
    """The quotas as the funnel and the rejected ledger state them (`shares general 80%, portrait 20%`)."""
    assert recipe.quotas is not None
    return "shares " + ", ".join(f"{c} {v:.0%}" for c, v in recipe.quotas.shares.items())


def write_outputs(
    con: duckdb.DuckDBPyConnection, shards: list[Path], out_dir: Path, meta_dir: Path, recipe: Recipe
) -> None:
    # Shards are read with pyarrow, not DuckDB: the connection has file access disabled by now.
    store = ShardStore(out_dir, meta_root=meta_dir)
    for shard in shards:
        index = int(shard.stem.split("-")[1])
        fields = recipe_fields(recipe)
        extra = "".join(f", {quote(f.name)}" for f in fields)
        keep = con.sql(f"SELECT {KEY}{extra} FROM s WHERE alive AND partition = ?", params=[index]).to_arrow_table()
        if not keep.num_rows:
            continue
        # pyarrow rather than DuckDB for the copy: it keeps the pool's schema and its field metadata. The byte
        # columns (and embeddings) are never read: the selection references the pool rows that hold them.
        names = [n for n in storage.read_schema(shard).names if n not in POOL_ONLY_COLUMNS]
        table = storage.read_table(shard, columns=names)
        mask = pc.is_in(table.column(KEY), value_set=keep.column(KEY))
        rows = np.flatnonzero(mask.to_numpy(zero_copy_only=False))
        kept = reference_form(table.filter(mask), rows, shard, out_dir)
        where = pc.index_in(kept.column(KEY), value_set=keep.column(KEY))
        for column_field in fields:  # the category each kept row was counted in, for readers and the trainer
            kept = kept.append_column(column_field, pc.take(keep.column(column_field.name), where).cast(pa.string()))
        store.write(index, kept, fingerprint=f"{recipe.name}:{shard.name}")
    whys = [(r.name, r.why or r.describe()) for r in recipe.rules]
    whys.append(("task", f"task is not one of the recipe's tasks {list(recipe.tasks)}"))
    if recipe.quotas is not None:
        whys.append((QUOTA, recipe.quotas.why or f"beyond its category's share ({describe_quotas(recipe)})"))
    if recipe.taxonomy is not None:
        cap_text, resample_text = rebalance.describe(recipe.taxonomy)
        why = recipe.taxonomy.why
        whys += [(TAXONOMY_CAP, why or cap_text), (TAXONOMY_RESAMPLE, why or resample_text)]
    con.execute("CREATE OR REPLACE TEMP TABLE whys (name VARCHAR, why VARCHAR)")
    con.executemany("INSERT INTO whys VALUES (?, ?)", whys)
    detail = f"s.{DETAIL_COLUMN}" if DETAIL_COLUMN in {r[0] for r in con.execute("DESCRIBE s").fetchall()} else "NULL"
    rejected = con.sql(f"""SELECT s.{KEY}, s.uri, s.partition, s.task, s.reason, s.reasons, s.value, whys.why,
            CAST({detail} AS VARCHAR) AS detail, s.duplicate_of, s.duplicate_of_uri
        FROM s LEFT JOIN whys ON whys.name = s.reason
        WHERE NOT s.alive ORDER BY s.partition, s.uri""").to_arrow_table()
    storage.write_table(rejected, meta_dir / REJECTED)
    manifest: dict[str, Any] = {"recipe": recipe.name, "stage": recipe.stage, "resolution": recipe.resolution}
    if recipe.quotas is not None:  # the trainer's loader draws each category at its share (trainer/data/loader.py)
        manifest["category_weights"] = dict(recipe.quotas.shares)
    store.write_manifest(manifest)


def recipe_fields(recipe: Recipe) -> list[pa.Field]:
    """Columns the recipe adds to its kept rows: the category, and the augmentation query when it augments."""
    return ([CATEGORY_FIELD] if recipe.categories else []) + ([AUGMENT_FIELD] if recipe.augment is not None else [])


def refuse_overwrite(meta_dir: Path, recipe: Recipe, replace: bool) -> None:
    """Never replace a selection silently: only a re-run of the same recipe (name and overrides) may.

    Re-running a recipe after editing its thresholds refreshes its own selection, as it always did; what
    is refused is one recipe's (or experiment's) result landing in another one's folder.
    """
    recorded = meta_dir / RECIPE_JSON
    if replace or not meta_dir.exists():
        return
    if recorded.is_file():
        old = json.loads(recorded.read_text(encoding="utf-8"))
        if (old.get("name"), old.get("overrides") or {}) == (recipe.name, recipe.overrides):
            return
        what = f"recipe {old.get('name')!r}" + (f" with overrides {old['overrides']}" if old.get("overrides") else "")
    else:
        what = "an unknown recipe"
    raise SelectionExistsError(
        f"{meta_dir.name} holds the selection of {what}; choose another --name, or pass --replace to overwrite it"
    )


def recipe_json(recipe: Recipe) -> dict[str, Any]:
    from dataclasses import asdict

    return asdict(recipe)


def swap_in(tmp_dir: Path, out_dir: Path) -> None:
    old = None
    if out_dir.exists():
        old = out_dir.with_name(f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}")
        out_dir.rename(old)
    tmp_dir.rename(out_dir)
    if old is not None:
        storage.rmtree(old, ignore_errors=False)


def read_rejected(workspace: Workspace, recipe: str, reason: str | None, limit: int) -> pa.Table:
    try:
        path = workspace.require_selection(recipe) / REJECTED
    except WorkspaceError as exc:
        raise FileNotFoundError(str(exc)) from None
    if not path.is_file():
        raise MissingInput(f"no rejected rows for {recipe!r} in {workspace.root}: re-run `flywheel select`")
    con = storage.duckdb_connect(path)
    if reason is not None:  # a typo must not look like "nothing was rejected for that reason"
        found = con.sql(
            "SELECT DISTINCT r FROM (SELECT reason AS r FROM read_parquet(?) "
            "UNION ALL SELECT unnest(reasons) AS r FROM read_parquet(?)) WHERE r IS NOT NULL",
            params=[str(path), str(path)],
        ).fetchall()
        funnel = workspace.selection_dir(recipe) / FUNNEL_JSON
        rules = [r["name"] for r in json.loads(funnel.read_text())["rules"]] if funnel.is_file() else []
        valid = sorted({str(r[0]) for r in found} | set(rules))
        if reason not in valid:
            raise UserError(f"unknown reason {reason!r} for selection {recipe!r}; valid reasons: {', '.join(valid)}")
    where = "WHERE reason = ? OR list_contains(reasons, ?)" if reason else ""
    params: list[Any] = [str(path)] + ([reason, reason] if reason else []) + [int(limit)]
    query = f"SELECT * FROM read_parquet(?) {where} ORDER BY partition, uri LIMIT ?"
    return con.sql(query, params=params).to_arrow_table()
