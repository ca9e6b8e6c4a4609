"""`flywheel demo` end to end: every track gets rows (expansion from the held-out reservoir, pairs, rewrites)."""

from __future__ import annotations

import pyarrow.parquet as pq
from rich.console import Console

from flywheel.store.shards import ShardStore
from pipelines.demo.run import HELD_OUT_SCRIPT, run_demo


def test_demo_writes_rows_to_all_three_tracks(tmp_path, ray_session):
    report = run_demo(tmp_path / "demo", console=Console(quiet=True))
    tracks = report["loop"]["tracks"]
    assert tracks["pretrain"]["written"] > 0 and tracks["rl"]["pairs"] > 0 and tracks["prompt"]["pairs"] > 0
    root = tmp_path / "demo" / "tracks"
    pretrain = pq.read_table(ShardStore(root / "pretrain").shard_paths()).to_pylist()
    # the held-out concept comes back from the reservoir, with provenance and the case that asked for it
    reservoir_rows = [r for r in pretrain if r["provenance"] == "reservoir:demo-held-out"]
    assert reservoir_rows and all(r["badcase_id"] for r in pretrain)
    assert any(HELD_OUT_SCRIPT.lower() in r["expansion_query"].lower() for r in reservoir_rows)
    rl = pq.read_table(ShardStore(root / "rl").shard_paths()).to_pylist()
    assert all(r["margin"] >= 0.1 and r["chosen_image"].startswith(b"\x89PNG") for r in rl)
    prompt = pq.read_table(ShardStore(root / "prompt").shard_paths()).to_pylist()
    cups = [r for r in prompt if r["prompt"].startswith("three coffee cups") and r["ops"] == ["expand"]]
    assert cups and "no saucers" in cups[0]["rewrite"] and "three coffee cups" in cups[0]["rewrite"]
