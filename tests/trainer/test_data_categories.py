"""The loader draws curated rows per category at the recipe's shares (selection manifest `category_weights`),
deterministically, and the run log records how many rows of each category it drew."""

from __future__ import annotations

import json
import math
from itertools import islice

import pyarrow as pa
import yaml
from typer.testing import CliRunner

from flywheel.schema import core_schema
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.trainer.fixtures import fixture_rows
from tests.trainer.tiny import tiny_stage
from trainer.config import DataConfig
from trainer.data.buckets import make_buckets
from trainer.data.index import build_plan_index, resolve_data
from trainer.data.loader import BatchPlanner, LoaderState

BUCKETS = make_buckets([32], [1.0], 4)
WEIGHTS = {"general": 0.6, "portrait": 0.2, "text": 0.2}
# kept rows far from the shares (a `quotas: {mode: sample}` selection keeps every row): 10 / 5 / 1
KEPT = ["general"] * 10 + ["portrait"] * 5 + ["text"]


def _workspace(tmp_path, weights=WEIGHTS) -> Workspace:
    """Curated shards with a `category` column and the selection manifest's category weights."""
    ws = Workspace.at(tmp_path)
    store = ws.curated_store("stage1_256p")
    rows = fixture_rows(len(KEPT), 0, sizes=((32, 32),))
    for s, (start, stop) in enumerate(((0, 8), (8, len(KEPT)))):
        table = pa.Table.from_pylist(rows[start:stop], schema=core_schema())
        table = table.append_column("category", pa.array(KEPT[start:stop], pa.string()))
        store.write(s, table, fingerprint=f"fixture:{s}", row_group_size=4)
    store.write_manifest({"recipe": "stage1_256p", "category_weights": weights})
    (ws.selection_dir("stage1_256p") / "funnel.json").write_text(json.dumps({"rows_in": 16, "kept": 16}))
    return ws


def test_curated_batches_draw_categories_at_the_recipe_shares(tmp_path) -> None:
    ws = _workspace(tmp_path)
    cfg = DataConfig(t2i_ratio=1.0, batch_size=2, resolutions=[32], aspect_ratios=[1.0])
    index = build_plan_index(resolve_data(ws, cfg), BUCKETS)
    planner = BatchPlanner(index, cfg, seed=4)
    plans = list(islice(planner.plans(LoaderState()), 3000))
    drawn = plans[-1][1].categories
    assert sum(drawn.values()) == 2 * len(plans)
    for category, share in WEIGHTS.items():  # batch-level draws: binomial sd at n=3000 is <= 0.009
        got = drawn[category] / (2 * len(plans))
        assert abs(got - share) < 4 * math.sqrt(share * (1 - share) / len(plans)), (category, got)
    # every row of a batch has the category the batch drew; the same seed draws the same sequence
    for plan, _ in plans[:100]:
        assert len({index.categories[int(index.category_of[r])] for r in plan.rows}) == 1
    again = list(islice(BatchPlanner(index, cfg, seed=4).plans(LoaderState()), 300))
    assert [p.rows.tolist() for p, _ in again] == [p.rows.tolist() for p, _ in plans[:300]]


def test_a_weighted_category_without_rows_is_renormalised_away_with_a_note(tmp_path) -> None:
    ws = _workspace(tmp_path, {"general": 0.5, "portrait": 0.25, "text": 0.0, "screenshot": 0.25})
    cfg = DataConfig(t2i_ratio=1.0, batch_size=2, resolutions=[32], aspect_ratios=[1.0])
    planner = BatchPlanner(build_plan_index(resolve_data(ws, cfg), BUCKETS), cfg, seed=1)
    assert planner.categories == ["general", "portrait"]
    assert planner.category_weights.tolist() == [2 / 3, 1 / 3]
    assert any("screenshot" in n and "no curated rows" in n for n in planner.notes)


def test_flywheel_train_logs_the_rows_it_drew_per_category(tmp_path) -> None:
    ws = _workspace(tmp_path)
    cfg = tiny_stage("cat_tiny", data={"t2i_ratio": 1.0, "batch_size": 2}, train={"steps": 30, "log_every": 15})
    stage = tmp_path / "cat_tiny.yaml"
    stage.write_text(yaml.safe_dump(cfg.to_dict()))
    res = CliRunner().invoke(app, ["train", "-w", str(ws.root), "--stage", str(stage), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "curated rows per category" in res.output
    records = [json.loads(line) for line in (ws.runs_dir / "train-cat_tiny.jsonl").read_text().splitlines()]
    mix = [r for r in records if r.get("event") == "data_mix"][-1]
    assert mix["category_weights"] == WEIGHTS
    index = build_plan_index(resolve_data(ws, cfg.data), BUCKETS)
    expected = list(islice(BatchPlanner(index, cfg.data, seed=0).plans(LoaderState()), 30))[-1][1]
    assert mix["category_drawn"] == expected.categories and sum(expected.categories.values()) == 60
    assert sum(records[0]["drawn_category"].values()) == 30  # the step log of the first 15 steps
