"""A hostile folder, end to end on Ray: `score` finishes, every entry is one row, ids are unique, every
rejection has a reason; a corrupted pool shard is named and re-scored; the curated folder reads cleanly."""

from __future__ import annotations

import json
import os
from pathlib import Path

import duckdb
import pyarrow.parquet as pq
import pytest

from filters.config import ScoringConfig
from flywheel.imaging import DecodeLimits
from flywheel.ingest.folder import IMAGE_EXTENSIONS
from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.workspace import Workspace
from pipelines.steps.score import ScoreFailed, score
from tests.images import encode, photo_like, solid_png

FILTERS = ["broken", "resolution", "dedup", "entropy", "tokens"]


def hostile_folder(root: Path) -> tuple[int, dict[str, str]]:
    """Build the folder; return (image entries that are samples, expected broken_reason by file name)."""
    root.mkdir(parents=True)
    outside = root.parent / "outside"
    outside.mkdir()
    (outside / "secret.jpg").write_bytes(encode(photo_like(300, 300, seed=9)))
    good = encode(photo_like(330, 310, seed=7))
    for i in range(4):
        (root / f"photo{i}.jpg").write_bytes(encode(photo_like(320 + i, 300, seed=i)))
        (root / f"photo{i}.txt").write_text(f"a photo number {i} of a landscape")
    (root / "copy_a.jpg").write_bytes(good)  # byte-identical pair: two samples, two ids
    (root / "copy_b.jpg").write_bytes(good)
    (root / "copy_a.txt").write_text("a landscape photo with a blue sky")
    (root / "copy_b.txt").write_text("a landscape photo with a blue sky")
    (root / "zero1.jpg").write_bytes(b"")  # zero-byte files used to share one id
    (root / "zero2.jpg").write_bytes(b"")
    (root / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (root / "text.jpg").write_bytes(b"this is not an image at all")
    os.mkfifo(root / "pipe.jpg")  # used to hang `score` forever
    (root / "huge.png").write_bytes(solid_png(12000, 12000))  # 144 MP: used to fail its whole partition
    os.symlink(outside / "secret.jpg", root / "leak.jpg")  # used to vanish from rows_in
    (root / "edit.jpg").write_bytes(good)
    (root / "edit.json").write_text(json.dumps({"task": "TI2I", "source": "../outside/secret.jpg", "instruction": "x"}))
    (root / "badside.jpg").write_bytes(encode(photo_like(300, 300, seed=5)))
    (root / "badside.json").write_text("{not json")  # invalid sidecars: a row with a sidecar_error
    (root / "badside.txt").write_bytes(b"\xff\xfe\x00 not utf-8")
    (root / "notes.md").write_text("not an image name: not a sample")
    expected = {
        "zero1.jpg": "zero_byte",
        "zero2.jpg": "zero_byte",
        "trunc.jpg": "truncated",
        "text.jpg": "not_image",
        "pipe.jpg": "read_error",
        "leak.jpg": "read_error",
        "edit.jpg": "read_error",
        "huge.png": None,
    }
    entries = [p for p in root.iterdir() if p.suffix.lstrip(".").lower() in IMAGE_EXTENSIONS]
    return len(entries), expected


def test_hostile_folder_scores_every_entry_once_with_reasons(tmp_path, ray_session):
    src, ws = tmp_path / "src", Workspace.at(tmp_path / "ws")
    n, expected = hostile_folder(src)
    result = score(str(src), ws, filters=FILTERS, rows_per_partition=4, log=lambda m: None)
    assert result.ok and result.rows_written == n

    pool = pq.read_table(ws.pool.shard_paths()).drop_columns(["image", "source_image"]).to_pylist()
    by_name = {Path(r["uri"]).name: r for r in pool}
    assert len(pool) == n == len(by_name)
    assert len({r["id"] for r in pool}) == n  # unique keys, even for byte-identical files
    assert by_name["copy_a.jpg"]["content_hash"] == by_name["copy_b.jpg"]["content_hash"]
    for name, reason in expected.items():
        assert by_name[name]["broken_reason"] == reason, (name, by_name[name]["broken_detail"])
    assert "sidecar_error" in json.loads(by_name["badside.jpg"]["meta"])
    field = pq.read_schema(ws.pool.shard_paths()[0]).field("resolution_min_side")
    assert field.metadata[b"unit"] == b"px" and field.metadata[b"description"]  # from the column registry

    selection = select(ws, load_recipe("stage1_256p"))
    funnel = selection.funnel
    funnel.check()
    assert funnel.rows_in == n
    rejected = pq.read_table(ws.rejected_path("stage1_256p")).to_pylist()
    assert len(rejected) == funnel.rejected and all(r["reason"] and r["why"] for r in rejected)
    for r in rejected:
        if r["reason"] == "broken":
            assert r["detail"], r  # the decoder's (or reader's) own words
    dup = next(r for r in rejected if r["reason"] == "exact_dup")
    assert dup["duplicate_of"] != dup["id"] and Path(dup["duplicate_of_uri"]).name in {"copy_a.jpg", "copy_b.jpg"}
    con = duckdb.connect()
    assert con.execute(f"SELECT count(*) FROM read_parquet('{selection.out_dir}/*.parquet')").fetchone()[0] == (
        funnel.kept
    )
    curated_field = pq.read_schema(next(selection.out_dir.glob("*.parquet"))).field("resolution_min_side")
    assert curated_field.metadata == field.metadata


def test_corrupt_pool_shard_is_named_and_rescored(tmp_path, ray_session):
    src, ws = tmp_path / "src", Workspace.at(tmp_path / "ws")
    for i in range(6):
        (src / f"p{i}.jpg").parent.mkdir(exist_ok=True)
        (src / f"p{i}.jpg").write_bytes(encode(photo_like(64, 64, seed=i)))
    score(str(src), ws, filters=["broken"], rows_per_partition=2, log=lambda m: None)
    shard = ws.pool.shard_path(1)
    ids_before = pq.read_table(shard, columns=["id", "uri"]).to_pylist()
    reference = shard.read_bytes()
    flipped = bytearray(reference)
    flipped[200:264] = bytes(b ^ 0xFF for b in flipped[200:264])
    shard.write_bytes(bytes(flipped))
    with pytest.raises(Exception, match=r"part-00001\.parquet"):
        select(ws, load_recipe("stage1_256p"))
    messages: list[str] = []
    again = score(str(src), ws, filters=["broken"], rows_per_partition=2, log=messages.append)
    assert again.written == 1 and again.skipped == 2
    assert any("part-00001.parquet" in m and "sha256" in m for m in messages), messages
    assert select(ws, load_recipe("stage1_256p")).funnel.rows_in == 6
    assert pq.read_table(shard, columns=["id", "uri"]).to_pylist() == ids_before  # same sample, same id


def test_a_partition_past_its_deadline_fails_alone_instead_of_hanging(tmp_path, ray_session):
    src, ws = tmp_path / "src", Workspace.at(tmp_path / "ws")
    src.mkdir()
    (src / "huge.png").write_bytes(solid_png(12000, 12000))  # ~1 s to decode: past a 0.2 s deadline
    cfg = ScoringConfig(limits=DecodeLimits(partition_timeout_s=0.2))
    with pytest.raises(ScoreFailed, match=r"1 partition"):
        score(str(src), ws, filters=["broken"], cfg=cfg, rows_per_partition=4, log=lambda m: None)
