"""`flywheel export`: a selection as self-contained Parquet or WebDataset shards, resumable and re-selectable."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as pads
import pytest
from PIL import Image
from typer.testing import CliRunner

from flywheel.export import ExportError, export
from flywheel.recipes import load_recipe
from flywheel.schema import CORE_COLUMNS, Column, ColumnRegistry
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

SCORES = (Column("resolution_min_side", pa.int32(), "px", "Shorter side.", owner="resolution"),)
RECIPE = """
name: exp
stage: 1
resolution: 64
tasks: [T2I]
rules:
  - {name: min_side, column: resolution_min_side, min: 64, why: too small}
"""


def _png(i: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (i * 10 % 256, 0, 0)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    """Two pool shards of 6 rows; every 3rd row too small; ids with characters tar keys must not carry."""
    ws = Workspace.at(tmp_path / "ws")
    schema = ColumnRegistry((*CORE_COLUMNS, *SCORES)).schema()
    for part in range(2):
        rows = [
            {
                "id": f"src/{part}.{j}",
                "uri": f"/src/{part}_{j}.png",
                "partition": part,
                "task": "T2I",
                "image": _png(part * 6 + j),
                "format": "PNG",
                "caption": f"caption {part}-{j}",
                "resolution_min_side": 32 if j % 3 == 2 else 128,
            }
            for j in range(6)
        ]
        ShardStore(ws.pool_dir).write(part, pa.Table.from_pylist(rows, schema=schema), f"fp{part}")
    recipe = tmp_path / "exp.yaml"
    recipe.write_text(RECIPE)
    select(ws, load_recipe(str(recipe)))
    return ws


def test_parquet_export_is_a_readable_self_contained_dataset(ws: Workspace) -> None:
    got = export(ws, "exp", "parquet")
    assert (got.rows, got.shards_written, got.shards_skipped) == (8, 2, 0)
    table = pads.dataset(str(got.out_dir), format="parquet").to_table()  # only the shards: _meta is hidden
    assert table.num_rows == 8 and all(
        Image.open(io.BytesIO(b)).size == (8, 8) for b in table.column("image").to_pylist()
    )
    again = export(ws, "exp", "parquet")
    assert (again.shards_written, again.shards_skipped) == (0, 2)  # resumable: complete shards are kept


def test_webdataset_export_writes_image_caption_and_metadata_per_sample(ws: Workspace) -> None:
    got = export(ws, "exp", "webdataset")
    tars = sorted(got.out_dir.glob("shard-*.tar"))
    assert len(tars) == 2
    with tarfile.open(tars[0]) as tar:
        names = tar.getnames()
        assert "src_0_0.png" in names and "src_0_0.txt" in names and "src_0_0.json" in names
        assert tar.extractfile("src_0_0.txt").read().decode() == "caption 0-0"  # type: ignore[union-attr]
        meta = json.loads(tar.extractfile("src_0_0.json").read())  # type: ignore[union-attr]
        assert meta["id"] == "src/0.0" and meta["resolution_min_side"] == 128 and "image" not in meta
        assert Image.open(tar.extractfile("src_0_0.png")).size == (8, 8)  # type: ignore[arg-type]
    images = 0
    for path in tars:
        with tarfile.open(path) as tar:
            images += sum(n.endswith(".png") for n in tar.getnames())
    assert images == 8
    assert json.loads((got.out_dir / "_manifest.json").read_text())["rows"] == 8


def test_reselection_redoes_the_export_and_drops_stale_shards(ws: Workspace, tmp_path: Path) -> None:
    export(ws, "exp", "webdataset")
    stricter = tmp_path / "exp2.yaml"
    stricter.write_text(RECIPE.replace("min: 64", "min: 200"))  # keeps nothing: both shards must go
    select(ws, load_recipe(str(stricter)), replace=True)
    got = export(ws, "exp", "webdataset")
    assert got.rows == 0 and not list(got.out_dir.glob("shard-*.tar"))


def test_bad_input_is_a_one_line_error(ws: Workspace) -> None:
    with pytest.raises(ExportError, match="unknown export format"):
        export(ws, "exp", "zip")
    from pipelines.cli import app

    result = CliRunner().invoke(app, ["export", "-w", str(ws.root), "--recipe", "nope"])
    assert result.exit_code == 2 and "no selection 'nope'" in result.output
    ok = CliRunner().invoke(app, ["export", "-w", str(ws.root), "--recipe", "exp", "--format", "webdataset"])
    assert ok.exit_code == 0 and "exported 8 rows" in ok.output
