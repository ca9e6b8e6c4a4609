"""The CPU scoring stage on one partition, without Ray: one bad sample never fails a partition, every
read problem becomes a rejected row with its reason, and a partition cannot hang."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from filters.config import ScoringConfig
from filters.registry import resolve
from flywheel.imaging import DecodeLimits
from flywheel.ingest import open_source
from pipelines.steps.score_stages import PartitionTimeout, ScorePartition, partition_deadline
from tests.flywheel.ingest.test_ingest_webdataset import make_tar
from tests.images import encode, photo_like, solid_png


def _score(root: Path, cfg: ScoringConfig | None = None) -> dict[str, dict[str, object]]:
    stage = ScorePartition(resolve(["broken", "resolution"]), [], cfg or ScoringConfig())
    (spec,) = open_source(str(root)).plan(1000)
    rows = stage.score_one(0, spec).to_pylist()
    return {row["uri"].rsplit("/", 1)[-1]: row for row in rows}


def test_a_144_megapixel_png_does_not_fail_its_partition(tmp_path):
    for i in range(3):
        (tmp_path / f"good{i}.jpg").write_bytes(encode(photo_like(64, 64, seed=i)))
    (tmp_path / "huge.png").write_bytes(solid_png(12000, 12000))
    rows = _score(tmp_path)
    assert len(rows) == 4 and all(r["broken_reason"] is None for r in rows.values())
    assert rows["huge.png"]["width"] == 12000
    strict = ScoringConfig(limits=DecodeLimits(max_pixels=100_000_000))
    assert _score(tmp_path, strict)["huge.png"]["broken_reason"] == "decompression_bomb"


def test_edit_whose_source_escapes_or_is_missing_is_rejected_with_the_reason(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    target = encode(photo_like(64, 64))
    (tmp_path / "outside.jpg").write_bytes(target)
    for name, source in (("escape", "../outside.jpg"), ("missing", "nope.jpg"), ("absent", None)):
        (root / f"{name}.jpg").write_bytes(target)  # the target decodes fine
        (root / f"{name}.json").write_text(json.dumps({"task": "TI2I", "source": source, "instruction": "do"}))
    os.symlink(tmp_path / "outside.jpg", root / "leak.jpg")
    rows = _score(root)
    assert set(rows) == {"escape.jpg", "missing.jpg", "absent.jpg", "leak.jpg"}
    for name, words in (
        ("escape.jpg", "escapes the root"),
        ("missing.jpg", "not found"),
        ("absent.jpg", 'no "source"'),
        ("leak.jpg", "outside the source root"),
    ):
        assert rows[name]["broken_reason"] == "read_error" and words in rows[name]["broken_detail"], rows[name]
    assert len({r["id"] for r in rows.values()}) == 4


def test_webdataset_edit_without_source_member_is_rejected_with_the_reason(tmp_path):
    target = encode(photo_like(64, 64))
    make_tar(tmp_path / "s.tar", [("k.jpg", target), ("k.instruction.txt", "make it red"), ("ok.jpg", target)])
    rows = _score(tmp_path)
    assert rows["s.tar#k"]["broken_reason"] == "read_error" and "without a source" in rows["s.tar#k"]["broken_detail"]
    assert rows["s.tar#ok"]["broken_reason"] is None


def test_fifo_named_jpg_is_a_rejected_row_and_scoring_finishes(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(encode(photo_like(64, 64)))
    os.mkfifo(tmp_path / "pipe.jpg")
    started = time.monotonic()
    rows = _score(tmp_path)
    assert time.monotonic() - started < 30
    assert rows["pipe.jpg"]["broken_reason"] == "read_error" and "fifo" in rows["pipe.jpg"]["broken_detail"]


def test_partition_deadline_interrupts_a_blocking_read(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    started = time.monotonic()
    expected = r"partition 7 ran longer than limits\.partition_timeout_s=0\.3s"
    with pytest.raises(PartitionTimeout, match=expected), partition_deadline(0.3, "partition 7"):
        fifo.read_bytes()  # opening a FIFO with no writer blocks forever without the deadline
    assert time.monotonic() - started < 10
    with partition_deadline(0.3, "partition 8"):  # a fast block is untouched and the alarm is disarmed
        pass
    time.sleep(0.5)


def test_a_scorer_raising_on_one_sample_rejects_that_sample_only(tmp_path):
    import pyarrow as pa

    from filters.base import CpuScorer
    from filters.broken import BrokenScorer
    from flywheel.schema import Column

    class Fragile(CpuScorer):
        """Raises on any batch holding a caption with 'boom', as a scorer bug on one odd sample would."""

        name = "fragile"
        columns = (Column("fragile_len", pa.int32(), "", "caption length", owner="fragile"),)

        def score(self, batch):
            if any("boom" in (c or "") for c in batch.captions):
                raise ValueError("cannot handle this caption")
            return {"fragile_len": [len(c or "") for c in batch.captions]}

    for i, caption in enumerate(("fine", "boom here", "also fine")):
        (tmp_path / f"s{i}.jpg").write_bytes(encode(photo_like(64, 64, seed=i)))
        (tmp_path / f"s{i}.txt").write_text(caption)
    (spec,) = open_source(str(tmp_path)).plan(100)
    rows = ScorePartition([BrokenScorer, Fragile], [], ScoringConfig()).score_one(0, spec).to_pylist()
    by_name = {Path(r["uri"]).name: r for r in rows}
    assert [by_name[f"s{i}.jpg"]["fragile_len"] for i in range(3)] == [4, None, 9]
    assert by_name["s1.jpg"]["broken_reason"] == "scorer_error"
    assert "fragile scorer failed: ValueError: cannot handle this caption" in by_name["s1.jpg"]["broken_detail"]
    assert by_name["s0.jpg"]["broken_reason"] is None and by_name["s2.jpg"]["broken_reason"] is None


def test_workers_write_whole_partitions_and_split_ones_through_pieces(tmp_path):
    """The writer stage writes a whole partition as its shard; halves of a split one become pieces that merge
    into the same shard, and the driver only ever sees the small summaries."""
    import pyarrow.parquet as pq

    from filters.registry import column_registry
    from flywheel.store.shards import ShardStore
    from pipelines.steps.score_stages import EXPECTED, ScoreShards
    from pipelines.steps.shard_writer import SUMMARY_SCHEMA, merge_pieces, write_blocks

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        (src / f"p{i}.png").write_bytes(encode(photo_like(48, 40, seed=i), "PNG"))
    classes = resolve(["broken", "resolution"])
    (spec,) = open_source(str(src)).plan(1000)
    block = ScorePartition(classes, [], ScoringConfig()).score_one(3, spec)

    def job(root: Path) -> ScoreShards:
        schema = column_registry(classes).schema()
        return ScoreShards(str(root), "partition", EXPECTED, {3: spec.fingerprint}, "s1", schema)

    pool = tmp_path / "pool"
    summary = write_blocks(block, job(pool))
    assert summary.schema == SUMMARY_SCHEMA and "image" not in summary.column_names
    row = summary.to_pylist()[0]
    assert (row["shard"], row["rows"], row["written"]) == (3, 4, True)
    stats = json.loads(row["stats"])
    assert stats["captions_missing"] == 4 and stats["counters"]["resolution"]["rows"] == 4
    whole = pq.read_table(ShardStore(pool).shard_path(3))
    assert ShardStore(pool).completed(3, spec.fingerprint, "s1") is not None and whole.num_rows == 4

    split = tmp_path / "split"
    halves = [write_blocks(b, job(split)) for b in (block[:1], block[1:])]
    pieces = [h.to_pylist()[0] for h in halves]
    assert [p["written"] for p in pieces] == [False, False] and [p["rows"] for p in pieces] == [1, 3]
    assert ShardStore(split).completed(3) is None  # pieces are not a shard
    assert merge_pieces(job(split), 3, [p["piece"] for p in pieces]) == 4
    assert pq.read_table(ShardStore(split).shard_path(3)).equals(whole)
    assert ShardStore(split).completed(3, spec.fingerprint, "s1") is not None
    assert not list(ShardStore(split).pieces_dir.glob("*"))
    ShardStore(split).write_piece(5, whole)  # a crash leaves a piece: the next run removes it, redoes the part
    assert ShardStore(split).clean_temporaries() == 1
