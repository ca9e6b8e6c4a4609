"""Sample ids are keys (one per input row, stable across runs); content hashes are separate columns."""

from __future__ import annotations

from pathlib import Path

from flywheel.ids import content_hash, sample_id
from flywheel.ingest import open_source, read_partition


def _ids(root: Path) -> dict[str, str]:
    source = open_source(str(root))
    return {
        Path(s.uri).name: sample_id(spec.kind, s.uri, s.source_uri)
        for spec in source.plan(2)
        for s in read_partition(spec)
    }


def test_byte_identical_files_get_distinct_ids_and_equal_content_hashes(tmp_path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(b"")  # every zero-byte file used to share one id
    (tmp_path / "d.jpg").write_bytes(b"same bytes")
    (tmp_path / "e.jpg").write_bytes(b"same bytes")
    ids = _ids(tmp_path)
    assert len(set(ids.values())) == len(ids) == 5
    assert content_hash(b"same bytes", None) == content_hash(b"same bytes", None)


def test_ids_are_stable_across_runs_and_follow_the_source_identity(tmp_path):
    (tmp_path / "x.jpg").write_bytes(b"one")
    first = _ids(tmp_path)
    assert _ids(tmp_path) == first  # same input, same ids
    (tmp_path / "x.jpg").write_bytes(b"two")  # a re-encoded file is the same sample
    assert _ids(tmp_path) == first
    assert sample_id("folder", "/a/x.jpg", "/a/src1.jpg") != sample_id("folder", "/a/x.jpg", "/a/src2.jpg")
    assert sample_id("folder", "/a/x.jpg") != sample_id("parquet", "/a/x.jpg")
