"""`mix:` in recipes: parsing and validation, and selection of track rows beside the curated set."""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.config import ConfigError
from flywheel.recipes import load_recipe
from flywheel.recipes.recipe import _builtin_dir
from flywheel.select import read_mix, select
from flywheel.store.shards import ShardStore
from flywheel.tracks.common import track_dir
from flywheel.workspace import Workspace
from tests.flywheel.test_select import _pool


def _recipe(tmp_path, mix: str) -> str:
    """The built-in stage1 recipe renamed `mixed`, with `mix` YAML appended."""
    path = tmp_path / "mixed.yaml"
    path.write_text((_builtin_dir() / "stage1_256p.yaml").read_text().replace("name: stage1_256p", "name: mixed") + mix)
    return str(path)


def _track(ws: Workspace) -> None:
    """Expansion rows: a good reservoir row, a duplicate of it, a curated row, an NSFW row, a low-entropy row."""
    n = 5
    table = pa.table(
        {
            "id": ["r_good", "r_dup", "id_good1", "r_nsfw", "r_flat"],
            "uri": ["a", "b", "good1", "c", "d"],
            "partition": [0] * n,
            "task": ["T2I"] * n,
            "image": [b"x"] * n,
            "file_bytes": [100] * n,
            "broken_reason": pa.array([None] * n, pa.string()),
            "resolution_min_side": pa.array([512] * n, pa.int32()),
            "resolution_aspect": pa.array([1.0] * n, pa.float32()),
            "nsfw_score": pa.array([0.0, 0.0, 0.0, 0.99, 0.0], pa.float32()),
            "dedup_sha256": ["z1", "z1", "s1", "z3", "z4"],
            "entropy_bits": pa.array([3.0, 3.0, 3.0, 3.0, 0.05], pa.float32()),
            "caption_issue": pa.array([None] * n, pa.string()),
            "caption_tokens": pa.array([10] * n, pa.int32()),
            "badcase_id": ["c1"] * n,
            "provenance": ["reservoir:photos", "pool", "pool", "pool", "pool"],
        }
    )
    store = ShardStore(track_dir(ws, "pretrain"))
    store.write(0, table, "track:pretrain")
    store.write_manifest({"track": "pretrain"})


def test_mix_parses_and_validates(tmp_path):
    rec = load_recipe(_recipe(tmp_path, "mix: [{from: tracks/pretrain, weight: 0.1}]\n"))
    assert [(m.source, m.weight, m.rules) for m in rec.mix] == [("tracks/pretrain", 0.1, "quality")]
    assert {r.name for r in rec.distribution_rules()} == {"aspect", "rotation", "entropy", "clip"}
    bad = {
        "mix: [{from: tracks/rl, weight: 0.1}]\n": "not mixable",
        "mix: [{from: tracks/pretrain, weight: 1.5}]\n": "weight",
        "mix: [{from: tracks/pretrain}]\n": "needs `from` and `weight`",
        "mix: [{from: tracks/pretrain, weight: 0.1, wieght: 2}]\n": "unknown config key",
        "mix: {from: tracks/pretrain}\n": "must be a list",
        "mix: [{from: tracks/pretrain, weight: 0.1, rules: some}]\n": "quality, all or none",
    }
    for text, message in bad.items():
        with pytest.raises(ConfigError, match=message):
            load_recipe(_recipe(tmp_path, text))


def test_select_writes_mix_rows_with_provenance_deduplicated(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    _track(ws)
    sel = select(ws, load_recipe(_recipe(tmp_path, "mix: [{from: tracks/pretrain, weight: 0.25}]\n")))
    (m,) = sel.extra["mix"]
    # quality rules only: the low-entropy row stays (entropy is a distribution rule), NSFW goes
    assert (m["rows_in"], m["kept"]) == (5, 2)
    assert m["by_reason"] == {"nsfw": 1, "in_curated": 1, "duplicate": 1}
    assert m["provenance"] == {"pool": 1, "reservoir:photos": 1}
    entries = read_mix(ws, "mixed")
    assert [(e["from"], e["weight"]) for e in entries] == [("tracks/pretrain", 0.25)]
    rows = pq.read_table(entries[0]["shards"]).to_pylist()
    assert [r["id"] for r in rows] == ["r_good", "r_flat"]
    assert all(r["badcase_id"] == "c1" for r in rows)
    # the curated folder still holds only the kept pool rows
    curated = pq.read_table(sorted(str(p) for p in sel.out_dir.glob("part-*.parquet")))
    assert "r_good" not in curated.column("id").to_pylist()
    assert json.loads((sel.meta_dir / "mix.json").read_text())["sources"][0]["dir"] == "mix/mixed/tracks-pretrain"


def test_mix_all_rules_and_stale_mix_removed(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    _track(ws)
    sel = select(ws, load_recipe(_recipe(tmp_path, "mix: [{from: tracks/pretrain, weight: 0.1, rules: all}]\n")))
    assert sel.extra["mix"][0]["kept"] == 1 and sel.extra["mix"][0]["by_reason"]["entropy"] == 1
    select(ws, load_recipe(_recipe(tmp_path, "")))
    assert read_mix(ws, "mixed") == [] and not (ws.root / "mix" / "mixed").exists()


def test_mix_without_track_rows_says_so(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    sel = select(ws, load_recipe(_recipe(tmp_path, "mix: [{from: tracks/pretrain, weight: 0.1}]\n")))
    assert sel.extra["mix"][0]["kept"] == 0 and "no complete shards" in sel.extra["mix"][0]["note"]
