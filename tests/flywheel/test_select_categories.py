"""Categories, quotas and the distribution filter (`top ... by: category`) select in the stated proportions."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.config import ConfigError
from flywheel.recipes import load_recipe
from flywheel.select import read_rejected, select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

RECIPE = """
name: balanced
tasks: [T2I]
keep_best_by: ["aesthetic_score DESC NULLS LAST", "id"]
categories:
  - {name: text, when: "text_area_fraction >= 0.05", why: text rendering data}
  - {name: portrait, when: "face_area_fraction >= 0.02"}
  - {name: general}
rules:
  - {name: broken, column: broken_reason, is_null: true, why: undecodable}
  - {name: best_half, role: distribution, column: aesthetic_score, top: 0.5, by: category, why: top half per category}
quotas:
  shares: {general: 0.5, portrait: 0.25, text: 0.25}
"""


def _pool(ws: Workspace) -> None:
    """40 general, 12 portrait and 20 text rows in two shards; aesthetic_score rises with the row number."""
    rows = [("g", 0.0, 0.0)] * 40 + [("p", 0.0, 0.1)] * 12 + [("t", 0.3, 0.0)] * 20
    store = ShardStore(ws.pool_dir)
    for part, chunk in enumerate((rows[:36], rows[36:])):
        n = len(chunk)
        ids = [f"{kind}{part}_{i}" for i, (kind, _, _) in enumerate(chunk)]
        table = pa.table(
            {
                "id": ids,
                "uri": ids,
                "partition": [part] * n,
                "task": ["T2I"] * n,
                "image": [b"x"] * n,
                "file_bytes": [100] * n,
                "broken_reason": pa.array([None] * n, pa.string()),
                "text_area_fraction": pa.array([t for _, t, _ in chunk], pa.float32()),
                "face_area_fraction": pa.array([f for _, _, f in chunk], pa.float32()),
                "aesthetic_score": pa.array([float(i) for i in range(n)], pa.float32()),
            }
        )
        store.write(part, table, f"fp{part}")


def test_quotas_and_a_per_category_top_rule_select_in_the_stated_proportions(tmp_path) -> None:
    ws = Workspace.at(tmp_path)
    _pool(ws)
    recipe_file = tmp_path / "balanced.yaml"
    recipe_file.write_text(RECIPE)
    sel = select(ws, load_recipe(str(recipe_file)))
    f = sel.funnel
    f.check()
    # top half per category: 20 general, 6 portrait, 10 text; quotas 50/25/25 are limited by the 6 portraits
    assert f.removed_by_rule["best_half"] == 36 and f.removed_by_rule["quota"] == 12
    assert f.by_category == {
        "general": {"in": 40, "kept": 12},
        "portrait": {"in": 12, "kept": 6},
        "text": {"in": 20, "kept": 6},
    }
    kept = pq.read_table(sorted(sel.out_dir.glob("part-*.parquet")))
    counts = {c: kept.column("category").to_pylist().count(c) for c in ("general", "portrait", "text")}
    assert counts == {"general": 12, "portrait": 6, "text": 6}
    assert kept.schema.field("category").metadata[b"owner"] == b"recipe"
    # within each category the best rows survive: the kept general rows are the 12 best general ones
    general = pq.read_table(ws.pool.shard_paths()).to_pylist()
    best = sorted((r for r in general if r["id"].startswith("g")), key=lambda r: (-r["aesthetic_score"], r["id"]))[:12]
    assert {r["id"] for r in best} == {r["id"] for r in kept.to_pylist() if r["category"] == "general"}
    rejected = read_rejected(ws, "balanced", "quota", 100)
    assert rejected.num_rows == 12 and set(rejected.column("why").to_pylist()) == {
        "beyond its category's share (shares general 50%, portrait 25%, text 25%)"
    }
    funnel_text = (ws.selection_dir("balanced") / "funnel.txt").read_text()
    assert "portrait" in funnel_text and "25.0%" in funnel_text
    assert json.loads((ws.selection_dir("balanced") / "funnel.json").read_text())["by_category"]["text"]["kept"] == 6
    again = select(ws, load_recipe(str(recipe_file)))  # deterministic
    assert again.funnel.by_category == f.by_category


def test_a_category_on_a_filter_that_was_not_run_matches_nothing_and_says_so(tmp_path) -> None:
    ws = Workspace.at(tmp_path)
    _pool(ws)
    recipe_file = tmp_path / "faces.yaml"
    recipe_file.write_text(RECIPE.replace("face_area_fraction", "face_count").replace(">= 0.02", ">= 1"))
    sel = select(ws, load_recipe(str(recipe_file)), known_columns={"face_count": "faces"})
    assert any("category 'portrait' matched nothing" in w and "faces" in w for w in sel.funnel.warnings)
    assert "portrait" not in sel.funnel.by_category


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.replace("general: 0.5", "general: 0.6"), "summing to 1"),
        (lambda r: r.replace("  - {name: general}\n", ""), "the last .* has none"),
        (lambda r: r.replace("top: 0.5", "top: 1.5"), "top must be a fraction"),
        (lambda r: r.replace("categories:", "cats:"), "unknown|need `categories:`"),
    ],
)
def test_bad_categories_quotas_or_top_are_one_line_errors(tmp_path, edit, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(edit(RECIPE))
    with pytest.raises(ConfigError, match=message):
        load_recipe(str(path))
