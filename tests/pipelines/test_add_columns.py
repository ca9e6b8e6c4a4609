"""Adding new CPU filters to an existing pool computes only the missing columns, then select works."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
from typer.testing import CliRunner

from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.trainer.fixtures import fixture_rows

NEW = ("jpeg_quality", "image_quality", "quality_v1")


def _old_pool(ws: Workspace) -> None:
    rows = fixture_rows(4, 0, sizes=((96, 96),))
    store = ShardStore(ws.pool_dir)
    for part in (0, 1):
        chunk = rows[2 * part : 2 * part + 2]
        table = pa.table({k: [r[k] for r in chunk] for k in ("id", "uri", "partition", "image", "caption", "task")})
        table = table.append_column("entropy_bits", pa.array([6.0, 6.0], pa.float32()))
        store.write(part, table, f"fp{part}")
    store.write_manifest({"columns": ["id", "entropy_bits"]})


def test_only_missing_columns_are_scored_and_select_then_applies_the_new_rules(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    _old_pool(ws)
    runner = CliRunner()
    res = runner.invoke(app, ["score-missing", "-w", str(ws.root), "--filters", ",".join(NEW)])
    assert res.exit_code == 0, res.output
    assert "on 2 of 2 shard(s)" in res.output
    table = pq.read_table(ws.pool.shard_path(0))
    assert table.column("entropy_bits").to_pylist() == [6.0, 6.0]  # untouched old column
    assert all(v is not None for v in table.column("v1_blur").to_pylist())
    assert table.column("jpeg_quality").to_pylist() == [None, None]  # PNG fixtures
    assert ws.pool.completed(0, "fp0") is not None  # marker rewritten, same fingerprint
    assert "iq_brisque" in ws.pool.read_manifest()["columns"]
    mtime = ws.pool.shard_path(0).stat().st_mtime_ns
    res = runner.invoke(app, ["score-missing", "-w", str(ws.root), "--filters", ",".join(NEW)])
    assert res.exit_code == 0 and "on 0 of 2 shard(s)" in res.output, res.output
    assert ws.pool.shard_path(0).stat().st_mtime_ns == mtime
    funnel = select(ws, load_recipe("stage4_1024p")).funnel
    missing = {n["rule"] for n in funnel.not_applied}
    assert not missing & {"jpeg_quality", "jpeg_double", "resaved_jpeg", "brisque", "blur", "noise_like"}


def test_empty_workspace_is_a_clear_error(tmp_path) -> None:
    res = CliRunner().invoke(app, ["score-missing", "-w", str(tmp_path / "none")])
    assert res.exit_code == 2 and "flywheel score" in res.output


def test_score_missing_runs_model_filters_and_reuses_a_stored_embedding(tmp_path) -> None:
    """Adding aesthetics to a scored pool embeds where the embedding is missing and reads it where stored."""
    import numpy as np

    from filters.aesthetics import AestheticsScorer

    ws = Workspace.at(tmp_path / "ws")
    _old_pool(ws)
    runner = CliRunner()
    res = runner.invoke(app, ["score-missing", "-w", str(ws.root), "--filters", "embedding"])
    assert res.exit_code == 0, res.output
    table = pq.read_table(ws.pool.shard_path(0))
    emb = np.array(table.column("image_embedding").to_pylist(), dtype=np.float32)
    assert emb.shape == (2, 1280) and "aesthetic_score" not in table.column_names
    # a planted embedding proves the stored column is read, not recomputed from the pixels
    planted = np.zeros((2, 1280), np.float32)
    planted[:, 0] = 1.0
    column = pa.FixedSizeListArray.from_arrays(pa.array(planted.ravel()), 1280)
    table = table.set_column(table.column_names.index("image_embedding"), "image_embedding", column)
    ws.pool.write(0, table, "fp0")
    res = runner.invoke(app, ["score-missing", "-w", str(ws.root), "--filters", "aesthetics"])
    assert res.exit_code == 0, res.output
    assert "'aesthetics': 2" in res.output and "'embedding'" not in res.output  # both shards, no new pass
    got = pq.read_table(ws.pool.shard_path(0)).column("aesthetic_score").to_pylist()
    expected = AestheticsScorer()(planted, np.ones(2, bool), [None, None])["aesthetic_score"]
    assert np.allclose(got, expected, atol=1e-5)
    other = pq.read_table(ws.pool.shard_path(1)).column("aesthetic_score").to_pylist()
    assert all(v is not None for v in other)
