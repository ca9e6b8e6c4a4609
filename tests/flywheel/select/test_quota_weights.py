"""`quotas:` record their shares in the selection manifest for the trainer; `mode: sample` rejects nothing."""

from __future__ import annotations

from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.workspace import Workspace
from tests.flywheel.select.pools import write_pool

RECIPE = """
name: weighted
tasks: [T2I]
categories:
  - {name: portrait, when: "face_area_fraction >= 0.02"}
  - {name: general}
quotas:
  shares: {general: 0.7, portrait: 0.3}
  mode: sample
"""


def _rows() -> list[dict]:
    return [{"id": f"p{i}", "face_area_fraction": 0.1} for i in range(2)] + [{"id": f"g{i}"} for i in range(18)]


def test_sample_quotas_keep_every_row_and_record_the_shares_for_the_trainer(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())
    path = tmp_path / "weighted.yaml"
    path.write_text(RECIPE)
    f = select(ws, load_recipe(str(path))).funnel
    f.check()
    assert f.kept == 20 and "quota" not in f.removed_by_rule
    assert f.rebalance["quotas"] == {"mode": "sample", "shares": {"general": 0.7, "portrait": 0.3}}
    manifest = ws.curated_store("weighted").read_manifest()
    assert manifest["category_weights"] == {"general": 0.7, "portrait": 0.3}


def test_select_quotas_cut_to_the_shares_and_record_them_too(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())
    path = tmp_path / "weighted.yaml"
    path.write_text(RECIPE.replace("mode: sample", "mode: select"))
    f = select(ws, load_recipe(str(path))).funnel
    # 2 portraits at 30%: a total of 6 (floor), general keeps 4
    assert f.by_category == {"general": {"in": 18, "kept": 4}, "portrait": {"in": 2, "kept": 2}}
    assert ws.curated_store("weighted").read_manifest()["category_weights"] == {"general": 0.7, "portrait": 0.3}
