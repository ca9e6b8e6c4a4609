"""Standard Parquet readers pointed at `curated/<recipe>/` must see exactly the kept rows.

Written against the real libraries a data engineer would reach for (Hugging Face `datasets`,
Polars, DuckDB, `pyarrow.dataset`): the folder holds nothing but kept shards, and each column
carries its registry description and unit in the Parquet field metadata.
"""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

from flywheel.recipes import load_recipe
from flywheel.schema import CORE_COLUMNS, Column, ColumnRegistry
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

SCORES = (
    Column("broken_reason", pa.string(), "", "Why the file cannot be used.", owner="broken"),
    Column("resolution_min_side", pa.int32(), "px", "Shorter side.", owner="resolution"),
    Column("dedup_sha256", pa.string(), "hex", "sha256 of the bytes.", owner="dedup"),
)
RECIPE = """
name: readers
stage: 1
resolution: 256
tasks: [T2I]
rules:
  - {name: broken, column: broken_reason, is_null: true, why: cannot be decoded}
  - {name: min_side, column: resolution_min_side, min: 256, why: too small}
  - {name: exact_dup, dedup: exact, column: dedup_sha256, why: byte-identical image already kept}
"""


def _pool(ws: Workspace) -> pa.Schema:
    """Three shards, 30 rows: every 3rd broken, every 5th small, rows 1 and 2 byte-identical copies of row 0."""
    schema = ColumnRegistry((*CORE_COLUMNS, *SCORES)).schema()
    store = ShardStore(ws.pool_dir)
    for part in range(3):
        rows = []
        for j in range(10):
            i = part * 10 + j
            sha = "same" if i in (0, 1, 2) else f"sha{i}"
            rows.append(
                {
                    "id": f"id{i:02d}",
                    "uri": f"/src/{i:02d}.jpg",
                    "partition": part,
                    "task": "T2I",
                    "image": b"img%d" % i,
                    "file_bytes": 100 + i,
                    "caption": f"caption {i}",
                    "broken_reason": "truncated" if i % 3 == 2 else None,
                    "resolution_min_side": 100 if i % 5 == 4 else 512,
                    "dedup_sha256": sha,
                }
            )
        store.write(part, pa.Table.from_pylist(rows, schema=schema), f"fp{part}")
    return schema


@pytest.fixture
def selected(tmp_path: Path) -> tuple[Workspace, Path, int]:
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    recipe_path = tmp_path / "readers.yaml"
    recipe_path.write_text(RECIPE)
    sel = select(ws, load_recipe(str(recipe_path)))
    sel.funnel.check()
    assert 0 < sel.funnel.kept < sel.funnel.rows_in == 30
    return ws, sel.out_dir, sel.funnel.kept


def test_curated_folder_holds_only_kept_shards(selected: tuple[Workspace, Path, int]) -> None:
    ws, folder, _ = selected
    assert {p.name for p in folder.iterdir()} == {p.name for p in folder.glob("part-*.parquet")}
    assert ws.rejected_path("readers").is_file() and ws.funnel_path("readers").is_file()


def test_duckdb_counts_exactly_the_kept_rows(selected: tuple[Workspace, Path, int]) -> None:
    _, folder, kept = selected
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{folder}/*.parquet')").fetchone()[0] == kept


def test_polars_scans_exactly_the_kept_rows(selected: tuple[Workspace, Path, int]) -> None:
    pl = pytest.importorskip("polars")
    _, folder, kept = selected
    assert pl.scan_parquet(str(folder)).select(pl.len()).collect().item() == kept
    assert pl.scan_parquet(f"{folder}/*.parquet").select(pl.len()).collect().item() == kept


def test_pyarrow_dataset_reads_exactly_the_kept_rows(selected: tuple[Workspace, Path, int]) -> None:
    _, folder, kept = selected
    assert pads.dataset(str(folder), format="parquet").count_rows() == kept


def test_hugging_face_datasets_loads_exactly_the_kept_rows(selected: tuple[Workspace, Path, int], tmp_path) -> None:
    datasets = pytest.importorskip("datasets")
    _, folder, kept = selected
    ds = datasets.load_dataset("parquet", data_dir=str(folder), split="train", cache_dir=str(tmp_path / "hf"))
    assert ds.num_rows == kept
    assert len(set(ds["id"])) == kept


def test_kept_shards_carry_column_descriptions_and_units(selected: tuple[Workspace, Path, int]) -> None:
    _, folder, _ = selected
    schema = pq.read_schema(next(folder.glob("part-*.parquet")))
    side = schema.field("resolution_min_side").metadata
    assert side[b"unit"] == b"px" and side[b"description"] == b"Shorter side."
    assert b"Sample key" in schema.field("id").metadata[b"description"]
    assert schema.metadata[b"flywheel.schema_version"] == b"2"


def test_duplicate_of_names_the_kept_sample_by_id_and_uri(selected: tuple[Workspace, Path, int]) -> None:
    ws, folder, _ = selected
    rejected = pq.read_table(ws.rejected_path("readers")).to_pylist()
    dup = next(r for r in rejected if r["reason"] == "exact_dup")
    kept_ids = set(pads.dataset(str(folder)).to_table(columns=["id"]).column("id").to_pylist())
    # row 1 has more file bytes than its copy row 0 (row 2 is broken): row 1 is the kept member
    assert dup["id"] == "id00" and dup["duplicate_of"] == "id01" and dup["duplicate_of_uri"] == "/src/01.jpg"
    assert dup["duplicate_of"] in kept_ids and dup["duplicate_of"] != dup["id"]
    assert dup["value"] == "same" and dup["why"] == "byte-identical image already kept"
