"""Image bytes stored once: a selection references pool rows, and every reader that needs pixels gets them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.recipes import load_recipe
from flywheel.schema import CORE_COLUMNS, ColumnRegistry
from flywheel.select import select
from flywheel.store.images import POOL_ROW, BytesReader, StaleReferenceError, attach_bytes, bytes_source
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from tests.flywheel.test_export import RECIPE, SCORES, _png


def _pool(ws: Workspace, shift: int = 0) -> None:
    schema = ColumnRegistry((*CORE_COLUMNS, *SCORES)).schema()
    rows = [
        {
            "id": f"s{(j + shift) % 6}",
            "uri": f"/src/{(j + shift) % 6}.png",
            "partition": 0,
            "task": "T2I",
            "image": _png((j + shift) % 6),
            "format": "PNG",
            "caption": f"caption {j}",
            "resolution_min_side": 32 if (j + shift) % 3 == 2 else 128,
        }
        for j in range(6)
    ]
    ShardStore(ws.pool_dir).write(0, pa.Table.from_pylist(rows, schema=schema), f"fp{shift}")


@pytest.fixture
def selected(tmp_path: Path) -> tuple[Workspace, Path]:
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    recipe = tmp_path / "exp.yaml"
    recipe.write_text(RECIPE)
    select(ws, load_recipe(str(recipe)))
    (shard,) = ws.curated_store("exp").shard_paths()
    return ws, shard


def test_curated_shard_holds_no_bytes_but_points_at_its_pool_rows(selected: tuple[Workspace, Path]) -> None:
    ws, shard = selected
    table = pq.read_table(shard)
    assert "image" not in table.schema.names
    assert table.column("id").to_pylist() == ["s0", "s1", "s3", "s4"]
    assert table.column(POOL_ROW.name).to_pylist() == [0, 1, 3, 4]
    assert bytes_source(shard) == ShardStore(ws.pool_dir).shard_paths()[0].resolve()


def test_readers_that_need_pixels_get_the_pool_bytes(selected: tuple[Workspace, Path]) -> None:
    _, shard = selected
    table = attach_bytes(pq.read_table(shard), shard)
    assert table.column("image").to_pylist() == [_png(i) for i in (0, 1, 3, 4)]
    reader = BytesReader()
    assert reader.row(bytes_source(shard), 3, "s3")["image"] == _png(3)


def test_a_pool_rescored_under_other_rows_is_a_clear_error(selected: tuple[Workspace, Path]) -> None:
    ws, shard = selected
    _pool(ws, shift=1)  # same shard index, rows now in another order
    with pytest.raises(StaleReferenceError, match="re-run `flywheel select`"):
        attach_bytes(pq.read_table(shard), shard)
    with pytest.raises(StaleReferenceError, match="not the selected s1"):
        BytesReader().row(bytes_source(shard), 1, "s1")


def test_embeddings_stay_in_the_pool_with_the_bytes(tmp_path: Path) -> None:
    """A selection leaves `image_embedding` (5 KB a row) in the pool; per-row track references keep none either."""
    from flywheel.store.images import IMAGES_SHARD, reference_form, row_references

    table = pa.table({"id": ["a", "b"], "image": [b"x", b"y"], "image_embedding": [[0.5, 0.5], [1.0, 0.0]]})
    pool_shard = tmp_path / "pool" / "part-00000.parquet"
    curated = reference_form(table, np.array([0, 1]), pool_shard, tmp_path / "curated")
    assert curated.column_names == ["id", POOL_ROW.name]
    track = row_references(table, [str(pool_shard)] * 2, [0, 1], tmp_path / "tracks" / "pretrain")
    assert track.column_names == ["id", POOL_ROW.name, IMAGES_SHARD.name]
    assert track.column(IMAGES_SHARD.name).to_pylist() == ["../../pool/part-00000.parquet"] * 2
