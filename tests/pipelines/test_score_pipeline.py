"""End-to-end scoring on Ray: accounting, hostile input, and resume after SIGKILL."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from skimage import data

from flywheel.ingest.base import PartitionSpec
from flywheel.workspace import Workspace
from pipelines.steps.score import MIN_PARTITIONS, plan, score, small_source_rows
from tests.images import encode, photo_like, png_bomb_header

REPO = Path(__file__).resolve().parents[2]


def _corpus(root: Path, n_photos: int = 6) -> int:
    """A small hostile folder: photos with captions plus broken and odd files. Returns file count."""
    root.mkdir(parents=True, exist_ok=True)
    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    for i in range(n_photos):
        (root / f"p{i:03d}.jpg").write_bytes(encode(photos[i % 4][: 200 + 10 * i, : 260 + 7 * i]))
        (root / f"p{i:03d}.txt").write_text(f"a photo number {i} of something nice")
    (root / "dup.jpg").write_bytes((root / "p000.jpg").read_bytes())
    (root / "zero.jpg").write_bytes(b"")
    (root / "text.jpg").write_bytes(b"this is not an image at all")
    good = encode(photo_like(300, 300))
    (root / "trunc.jpg").write_bytes(good[: len(good) // 2])
    (root / "bomb.png").write_bytes(png_bomb_header())
    (root / "sub").mkdir(exist_ok=True)
    (root / "sub" / "nocap.png").write_bytes(encode(photo_like(64, 64), "PNG"))
    (root / "bad.json").write_text("{not json")
    (root / "bad.jpg").write_bytes(good)
    return n_photos + 7  # bad.json is the (invalid) sidecar of bad.jpg, not a sample


def _workspace(root: Path) -> Workspace:
    ws = Workspace.at(root)
    ws.pool_dir.mkdir(parents=True)
    return ws


def test_a_small_source_is_split_for_every_core_and_a_resume_plans_the_same_shards(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for i in range(20):
        (src / f"p{i:03d}.jpg").write_bytes(encode(photo_like(32, 32, seed=i)))
    ws = _workspace(tmp_path / "ws")
    pending, skipped = plan(str(src), ws, None)
    sizes = [p.spec.stop - p.spec.start for p in pending]
    # 20 rows in at most MIN_PARTITIONS partitions of ceil(20 / 8) = 3: several cores, not one 256-row partition
    assert sizes == [3] * 6 + [2] and skipped == 0
    again, _ = plan(str(src), ws, None)  # a re-run (resume) plans the same partitions, numbered the same
    assert [(p.index, p.spec.fingerprint) for p in again] == [(p.index, p.spec.fingerprint) for p in pending]
    # A workspace that registered the source under the one-partition default plan keeps that plan.
    legacy = _workspace(tmp_path / "legacy")
    plan(str(src), legacy, 256)
    kept, _ = plan(str(src), legacy, None)
    assert [p.spec.stop - p.spec.start for p in kept] == [20]


def test_a_source_with_enough_partitions_keeps_the_default_size():
    def specs(n: int) -> list[PartitionSpec]:
        return [PartitionSpec("folder", "s", "/", i, (), i * 256, (i + 1) * 256) for i in range(n)]

    assert small_source_rows(specs(MIN_PARTITIONS)) is None
    assert small_source_rows(specs(2)) == 2 * 256 // MIN_PARTITIONS
    one_row = [PartitionSpec("folder", "s", "/", 0, (), 0, 1)]
    assert small_source_rows(one_row) is None  # a single row cannot be split


def _pool_rows(ws: Workspace) -> list[tuple[str, str]]:
    rows = []
    for shard in ws.pool.shard_paths():
        t = pq.read_table(shard, columns=["id", "uri"])
        rows += list(zip(t.column("id").to_pylist(), t.column("uri").to_pylist(), strict=True))
    return rows


def test_every_input_row_is_scored_once_even_when_broken(tmp_path, ray_session):
    n = _corpus(tmp_path / "src")
    ws = Workspace.at(tmp_path / "ws")
    result = score(str(tmp_path / "src"), ws, rows_per_partition=4, log=lambda m: None)
    rows = _pool_rows(ws)
    assert result.ok and len(rows) == n == result.rows_written
    assert len({u for _, u in rows}) == n
    pool = pq.read_table(ws.pool.shard_paths())
    reasons = dict(zip(pool.column("uri").to_pylist(), pool.column("broken_reason").to_pylist(), strict=True))
    by_name = {Path(u).name: r for u, r in reasons.items()}
    assert by_name["zero.jpg"] == "zero_byte" and by_name["text.jpg"] == "not_image"
    assert by_name["trunc.jpg"] == "truncated" and by_name["bomb.png"] == "decompression_bomb"
    assert by_name["p000.jpg"] is None
    assert pool.column("nsfw_score").null_count == 4  # the four broken files
    assert pool.column("clip_score").null_count == n  # no CLIP weights configured: null, never faked
    manifest = ws.pool.read_manifest()
    assert manifest["rows"] == n and len(manifest["shards"]) == len(ws.pool.shard_paths())
    # the workers wrote the shards: the driver received only their small summaries, no image bytes
    image_bytes = sum(len(b or b"") for b in pool.column("image").to_pylist())
    assert result.merged_pieces == 0 and 0 < result.driver_bytes < 2000 * result.partitions < image_bytes
    again = score(str(tmp_path / "src"), ws, rows_per_partition=4, log=lambda m: None)
    assert again.written == 0 and again.skipped == result.written


def test_sigkill_mid_run_then_resume_gives_the_same_pool(tmp_path, ray_session):
    src = tmp_path / "src"
    n = _corpus(src, n_photos=24)
    reference = Workspace.at(tmp_path / "ref")
    score(
        str(src),
        reference,
        rows_per_partition=1,
        filters=["broken", "resolution", "dedup", "entropy"],
        log=lambda m: None,
    )

    killed = Workspace.at(tmp_path / "killed")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "score",
        str(src),
        "--workspace",
        str(killed.root),
        "--rows-per-partition",
        "1",
        "--filters",
        "broken,resolution,dedup,entropy",
    ]
    proc = subprocess.Popen(
        cmd, cwd=REPO, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 120
    markers = killed.pool_dir / "_markers"
    while time.time() < deadline and proc.poll() is None:
        if markers.is_dir() and len(list(markers.glob("*.json"))) >= 2:
            break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the scoring run ended before it could be killed")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done_at_kill = len(list(markers.glob("*.json")))
    assert 0 < done_at_kill < n

    result = score(
        str(src), killed, rows_per_partition=1, filters=["broken", "resolution", "dedup", "entropy"], log=lambda m: None
    )
    assert result.skipped >= done_at_kill and result.skipped + result.written == n
    assert sorted(_pool_rows(killed)) == sorted(_pool_rows(reference))
    assert len(_pool_rows(killed)) == len(set(_pool_rows(killed))) == n
    assert not list(killed.pool_dir.glob("*.tmp-*"))


def test_clip_scores_come_from_a_configured_local_checkpoint(tmp_path, ray_session):
    from filters.clip_tiny import build_tiny_clip
    from filters.config import ClipConfig, ScoringConfig

    config_path, checkpoint = build_tiny_clip(tmp_path / "clip")
    cfg = ScoringConfig(
        clip=ClipConfig(model=config_path.stem, checkpoint=str(checkpoint), model_config=str(config_path))
    )
    n = _corpus(tmp_path / "src", n_photos=3)
    ws = Workspace.at(tmp_path / "ws")
    result = score(str(tmp_path / "src"), ws, cfg=cfg, filters=["clip"], rows_per_partition=8, log=lambda m: None)
    assert result.ok and not result.unavailable
    pool = pq.read_table(ws.pool.shard_paths(), columns=["uri", "caption", "broken_reason", "clip_score"]).to_pylist()
    assert len(pool) == n
    for row in pool:
        scorable = row["broken_reason"] is None and (row["caption"] or "").strip()
        assert (row["clip_score"] is not None) == bool(scorable), row
        if row["clip_score"] is not None:
            assert -1.0 <= row["clip_score"] <= 1.0


def test_scoring_into_a_pool_written_with_old_ids_is_refused_before_any_work(tmp_path):
    import json

    from flywheel.workspace import WorkspaceError

    ws = Workspace.at(tmp_path / "ws")
    ws.pool_dir.mkdir(parents=True)
    ws.pool.manifest_path.write_text(json.dumps({"schema_version": 1, "shards": [], "rows": 0}))
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.jpg").write_bytes(encode(photo_like(32, 32)))
    with pytest.raises(WorkspaceError, match=r"schema version 1.*source keys, not content hashes"):
        score(str(tmp_path / "src"), ws, log=lambda m: None)
    assert not list(ws.pool_dir.glob("part-*.parquet"))
