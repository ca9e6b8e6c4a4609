"""The trainer reads curated, captioned and mixed shards through the shard store and draws mixed sources in the
recipe's weights, deterministically, logging the mix it drew."""

from __future__ import annotations

import json
import math
from itertools import islice

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from flywheel.schema import core_schema
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.trainer.fixtures import fixture_rows, write_curated, write_mix
from tests.trainer.tiny import tiny_stage
from trainer.config import DataConfig
from trainer.data.buckets import make_buckets
from trainer.data.index import CURATED, build_plan_index, resolve_data
from trainer.data.loader import BatchPlanner, LoaderState, RowReader

BUCKETS = make_buckets([32], [1.0], 4)


def _workspace(tmp_path, weight=0.3):
    write_curated(tmp_path, rows=fixture_rows(8, 0, sizes=((32, 32),)), shards=2)
    mixed = fixture_rows(6, 0, sizes=((32, 32),), seed=5)
    for row in mixed:
        row["caption"] = "a reservoir " + str(row["caption"])
    write_mix(tmp_path, mixed, weight, provenance=["pool", "pool", "reservoir:shapes"] * 2)
    return Workspace.at(tmp_path)


def test_mixed_sources_are_drawn_in_the_recipe_weights_deterministically(tmp_path):
    ws = _workspace(tmp_path, weight=0.3)
    cfg = DataConfig(t2i_ratio=1.0, batch_size=2, resolutions=[32], aspect_ratios=[1.0])
    plan = resolve_data(ws, cfg)
    assert plan.weights == {CURATED: 0.7, "tracks/pretrain": 0.3}
    index = build_plan_index(plan, BUCKETS)
    planner = BatchPlanner(index, cfg, seed=4)
    plans = list(islice(planner.plans(LoaderState()), 3000))
    share = sum(p.source == "tracks/pretrain" for p, _ in plans) / len(plans)
    assert abs(share - 0.3) < 4 * math.sqrt(0.3 * 0.7 / len(plans))
    # every row of a mixed batch comes from the mix shard, of a curated batch from the curated shards
    for p, _ in plans[:200]:
        assert {index.sources[int(index.source_of[r])] for r in p.rows} == {p.source}
    # the loader state counts what was drawn, by source and by provenance
    final = plans[-1][1]
    assert sum(final.drawn.values()) == 2 * len(plans)
    assert final.drawn["tracks/pretrain"] == 2 * sum(p.source == "tracks/pretrain" for p, _ in plans)
    assert set(final.provenance) == {CURATED, "pool", "reservoir:shapes"}
    assert final.provenance["pool"] + final.provenance["reservoir:shapes"] == final.drawn["tracks/pretrain"]
    # deterministic under the seed; another seed draws another sequence
    again = [p.source for p, _ in islice(BatchPlanner(index, cfg, seed=4).plans(LoaderState()), 300)]
    assert again == [p.source for p, _ in plans[:300]]
    other = [p.source for p, _ in islice(BatchPlanner(index, cfg, seed=5).plans(LoaderState()), 300)]
    assert other != again


def test_shards_without_a_completion_marker_are_not_read(tmp_path):
    ws = _workspace(tmp_path)
    stray = ws.curated_dir("stage1_256p") / "part-00007.parquet"  # a shard whose writer died before its marker
    pq.write_table(pa.Table.from_pylist(fixture_rows(3, 0, sizes=((32, 32),), seed=9), schema=core_schema()), stray)
    plan = resolve_data(ws, DataConfig())
    assert stray not in [r.path for r in plan.shards]
    assert len([r for r in plan.shards if r.source == CURATED]) == 2


def test_captioned_shards_replace_curated_ones_with_fused_captions(tmp_path):
    ws = _workspace(tmp_path)
    curated = ShardStore(ws.curated_dir("stage1_256p"))
    table = pq.read_table(curated.shard_path(0))
    fused = [f"fused caption {i}" for i in range(table.num_rows)]
    fused[0] = None  # no fused caption for this row: the raw caption is used
    captioned = ShardStore(ws.root / "captioned" / "stage1_256p")
    captioned.write(0, table.append_column("caption_fused", pa.array(fused, pa.string())), fingerprint="c")
    cfg = DataConfig(t2i_ratio=1.0, mix=False)
    plan = resolve_data(ws, cfg)
    assert plan.captioned == 1 and plan.weights == {CURATED: 1.0}
    assert [r.caption_column for r in plan.shards] == ["caption_fused", "caption"]
    index = build_plan_index(plan, BUCKETS)
    reader = RowReader(index, 4)
    first = [i for i in range(index.rows) if index.shard_of[i] == 0]
    captions = [reader.row(i)["caption"] for i in first]
    assert captions[0] == table.column("caption")[0].as_py()
    assert captions[1:] == fused[1 : len(first)]
    assert resolve_data(ws, DataConfig(captions="curated")).captioned == 0


def test_a_mix_source_without_rows_is_renormalised_away(tmp_path):
    write_curated(tmp_path, rows=fixture_rows(4, 0, sizes=((32, 32),)))
    write_mix(tmp_path, [], 0.2)
    plan = resolve_data(Workspace.at(tmp_path), DataConfig())
    assert plan.weights == {CURATED: 1.0}
    assert "tracks/pretrain" in plan.notes[0] and "renormalised" in plan.notes[0]


def test_flywheel_train_draws_mixed_rows_in_the_logged_proportion(tmp_path):
    ws = _workspace(tmp_path, weight=0.3)
    cfg = tiny_stage("mix_tiny", data={"t2i_ratio": 1.0, "batch_size": 2}, train={"steps": 40, "log_every": 20})
    stage = tmp_path / "mix_tiny.yaml"
    stage.write_text(yaml.safe_dump(cfg.to_dict()))
    res = CliRunner().invoke(app, ["train", "-w", str(ws.root), "--stage", str(stage), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "rows drawn per source" in res.output
    records = [json.loads(line) for line in (ws.runs_dir / "train-mix_tiny.jsonl").read_text().splitlines()]
    mix = [r for r in records if r.get("event") == "data_mix"][-1]
    assert mix["weights"] == {CURATED: 0.7, "tracks/pretrain": 0.3}
    assert sum(mix["drawn"].values()) == 80  # 40 steps x batch 2
    # the logged counts are exactly what the planner draws for these 40 batches
    index = build_plan_index(resolve_data(ws, cfg.data), BUCKETS)
    expected = list(islice(BatchPlanner(index, cfg.data, seed=0).plans(LoaderState()), 40))[-1][1]
    assert mix["drawn"] == expected.drawn and mix["provenance"] == expected.provenance
    share = mix["drawn"].get("tracks/pretrain", 0) / 80
    assert abs(share - 0.3) < 3 * math.sqrt(0.3 * 0.7 / 40)  # 40 batch-level draws
    assert records[0]["drawn"] and sum(records[0]["drawn"].values()) == 40
