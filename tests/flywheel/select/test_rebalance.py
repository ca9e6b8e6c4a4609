"""`taxonomy:` per-node caps with quality retention, temperature resampling, seeds, and the per-node funnel."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from flywheel.config import ConfigError
from flywheel.recipes import load_recipe
from flywheel.select import read_rejected, select
from flywheel.select.rebalance import temperature_targets
from flywheel.workspace import Workspace
from tests.flywheel.select.pools import write_pool

RECIPE = """
name: balanced_tax
tasks: [T2I]
seed: 7
rules:
  - {name: broken, column: broken_reason, is_null: true}
taxonomy:
  level: 1
  cap: 30
  best_by: aesthetic_score
  temperature: 2.0
  total: 40
"""

NODES = {"animal/dog": 35, "animal/cat": 15, "object/vehicle": 20, "food": 5, "plant": 2}


def _rows() -> list[dict]:
    rows = []
    for path, n in NODES.items():
        for i in range(n):
            score = float((len(rows) * 37) % 211)  # distinct scores, scattered within each node
            rows.append({"id": f"{path.replace('/', '_')}_{i:02d}", "taxonomy_path": path, "aesthetic_score": score})
    rows += [{"id": f"none_{i}", "taxonomy_path": None, "aesthetic_score": 1.0} for i in range(3)]
    return rows


def _recipe(tmp_path, text: str = RECIPE):
    path = tmp_path / "balanced_tax.yaml"
    path.write_text(text)
    return load_recipe(str(path))


def test_caps_keep_the_best_of_each_node_then_temperature_resampling_flattens_the_long_tail(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    rows = _rows()
    write_pool(ws, rows)
    sel = select(ws, _recipe(tmp_path))
    f = sel.funnel
    f.check()  # every row kept or rejected by exactly one reason
    # animal holds 50 rows: the cap keeps its best 30. Then 40 rows over {animal 30, object 20, food 5, plant 2}
    # with weights sqrt(count): food and plant keep all their rows, animal 18 and object 15 share the rest
    assert f.removed_by_rule["taxonomy_cap"] == 20
    assert f.rebalance["taxonomy"]["targets"] == {"animal": 18, "object": 15, "food": 5, "plant": 2}
    assert f.removed_by_rule["taxonomy_resample"] == (30 - 18) + (20 - 15)
    assert f.by_taxonomy == {
        "animal": {"in": 50, "kept": 18},
        "food": {"in": 5, "kept": 5},
        "object": {"in": 20, "kept": 15},
        "plant": {"in": 2, "kept": 2},
        "(none)": {"in": 3, "kept": 3},  # rows without a path belong to no node and are left alone
    }
    assert f.kept == 43
    kept = {r["id"] for r in pq.read_table(sorted(sel.out_dir.glob("part-*.parquet"))).to_pylist()}
    animals = sorted(
        (r for r in rows if str(r["taxonomy_path"]).startswith("animal")), key=lambda r: -r["aesthetic_score"]
    )
    assert {r["id"] for r in animals[:18]} <= kept and not {r["id"] for r in animals[18:]} & kept
    assert read_rejected(ws, "balanced_tax", "taxonomy_cap", 100).num_rows == 20
    funnel = json.loads((ws.selection_dir("balanced_tax") / "funnel.json").read_text())
    assert funnel["by_taxonomy"]["animal"] == {"in": 50, "kept": 18}
    text = (ws.selection_dir("balanced_tax") / "funnel.txt").read_text()
    assert "taxonomy_resample" in text and "animal" in text


def test_without_a_quality_column_the_seed_decides_and_the_same_seed_gives_the_same_rows(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())
    unranked = RECIPE.replace("  best_by: aesthetic_score\n", "")
    picks = []
    for seed in (7, 7, 8):
        recipe = _recipe(tmp_path, unranked.replace("seed: 7", f"seed: {seed}"))
        sel = select(ws, recipe, replace=True)
        picks.append({r["id"] for r in pq.read_table(sorted(sel.out_dir.glob("part-*.parquet"))).to_pylist()})
        assert sel.funnel.by_taxonomy["animal"]["kept"] == 18
    assert picks[0] == picks[1] and picks[0] != picks[2]


def test_per_node_caps_override_the_default_cap(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())
    text = RECIPE.replace("  temperature: 2.0\n  total: 40\n", "").replace("level: 1", "level: 2")
    text = text.replace("cap: 30", "cap: 10\n  caps: {animal/dog: 4}")
    f = select(ws, _recipe(tmp_path, text)).funnel
    f.check()
    # level 2: animal/dog capped at 4, animal/cat and object/vehicle at 10; food and plant (one level) under 10
    assert f.by_taxonomy["animal"]["kept"] == 4 + 10 and f.by_taxonomy["object"]["kept"] == 10
    assert f.removed_by_rule["taxonomy_cap"] == (35 - 4) + (15 - 10) + (20 - 10)


def test_temperature_targets_sum_to_the_total_and_flatten_with_temperature() -> None:
    counts = {"head": 900, "mid": 90, "tail": 10}
    proportional = temperature_targets(counts, 1.0, 100)
    flat = temperature_targets(counts, 5.0, 100)
    assert proportional == {"head": 90, "mid": 9, "tail": 1}
    assert sum(flat.values()) == 100 and flat["tail"] == 10 and flat["head"] < 90
    assert temperature_targets(counts, 2.0, 5000) == counts  # a total beyond the rows keeps everything


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.replace("cap: 30", "cap: 0"), "cap must be a whole number"),
        (lambda r: r.replace("temperature: 2.0", "temperature: -1"), "temperature must be a number > 0"),
        (lambda r: r.replace("  total: 40\n", ""), "set taxonomy.total"),
        (lambda r: r.replace("level: 1", "levels: 1"), "unknown config key"),
        (lambda r: r.replace("seed: 7", "seed: seven"), "seed must be a whole number"),
        (lambda r: r.replace("cap: 30", "caps: {animal/dog: 3}"), "not nodes of level 1"),
    ],
)
def test_bad_taxonomy_keys_are_one_line_errors(tmp_path, edit, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _recipe(tmp_path, edit(RECIPE))


def test_a_taxonomy_on_a_pool_without_the_column_is_reported_not_applied(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, [{"id": f"r{i}", "aesthetic_score": 1.0} for i in range(4)], drop=["taxonomy_path"])
    known = {"taxonomy_path": "embedding", "resolution_megapixels": "resolution"}
    sel = select(ws, _recipe(tmp_path), known_columns=known)
    assert sel.funnel.kept == 4 and sel.funnel.by_taxonomy == {}
    assert any(n["rule"] == "taxonomy" and "embedding" in n["why"] for n in sel.funnel.not_applied)


def test_set_reaches_the_taxonomy_section_and_its_node_caps(tmp_path) -> None:
    """`--set taxonomy.caps.animal=4` re-selects without editing the YAML; a bad key is a one-line error."""
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())
    text = RECIPE.replace("  temperature: 2.0\n  total: 40\n", "")
    recipe = _recipe(tmp_path, text).with_overrides({"taxonomy.caps.animal": "4", "taxonomy.cap": "12"})
    assert recipe.name.startswith("balanced_tax+") and recipe.taxonomy.caps == {"animal": 4}
    f = select(ws, recipe).funnel
    assert f.by_taxonomy["animal"]["kept"] == 4 and f.by_taxonomy["object"]["kept"] == 12
    with pytest.raises(ConfigError, match=r"taxonomy.level.*mapping|unknown parameter 'levels'"):
        _recipe(tmp_path, text).with_overrides({"taxonomy.levels": "2"})
    with pytest.raises(ConfigError, match=r"no `augment:` section"):
        _recipe(tmp_path, text).with_overrides({"augment.k": "5"})
