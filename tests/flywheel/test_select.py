import pyarrow as pa
import pytest

from filters.registry import column_owners
from flywheel.recipes import load_recipe
from flywheel.select import read_rejected, select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace, WorkspaceError


def _pool(ws: Workspace) -> None:
    """Two shards of hand-made score rows with known fates under stage1_256p."""
    rows = [
        # uri, reason, min_side, nsfw, phash, sha, mp, caption_issue, tokens, clip
        ("good1", None, 512, 0.01, 0x0F0F, "s1", 0.5, None, 12, None),
        ("broken", "truncated", None, None, None, "s2", None, None, 10, None),
        ("small", None, 100, 0.01, 0x7777 << 32, "s3", 0.1, None, 10, None),
        ("nsfw", None, 512, 0.95, 0x1234 << 16, "s4", 0.5, None, 10, None),
        ("exact_a", None, 512, 0.01, 0x5555 << 32, "s5", 0.3, None, 10, None),
        ("exact_b", None, 512, 0.01, 0x5555 << 32, "s5", 0.3, None, 10, None),
        ("near_small", None, 300, 0.01, 0x0F0E, "s6", 0.2, None, 10, None),  # 1 bit from good1, smaller
        ("nocap", None, 512, 0.01, 0x00FF00FF, "s7", 0.5, "missing", None, None),
        ("smallnsfw", None, 10, 0.99, 0x0AAA, "s8", 0.001, None, 10, None),
    ]
    store = ShardStore(ws.pool_dir)
    for part, chunk in enumerate((rows[:5], rows[5:])):
        cols = list(zip(*chunk, strict=True))
        n = len(chunk)
        table = pa.table(
            {
                "id": [f"id_{u}" for u in cols[0]],
                "uri": list(cols[0]),
                "partition": [part] * n,
                "task": ["T2I"] * n,
                "image": [b"x"] * n,
                "file_bytes": [100] * n,
                "broken_reason": pa.array(cols[1], pa.string()),
                "resolution_min_side": pa.array(cols[2], pa.int32()),
                "resolution_aspect": pa.array([1.0] * n, pa.float32()),
                "nsfw_score": pa.array(cols[3], pa.float32()),
                "dedup_phash": pa.array(cols[4], pa.int64()),
                "dedup_sha256": pa.array(cols[5], pa.string()),
                "resolution_megapixels": pa.array(cols[6], pa.float32()),
                "caption_issue": pa.array(cols[7], pa.string()),
                "caption_tokens": pa.array(cols[8], pa.int32()),
                "clip_score": pa.array(cols[9], pa.float32()),
            }
        )
        store.write(part, table, f"fp{part}")


def test_select_funnel_adds_up_and_keeps_best_duplicates(tmp_path):
    ws = Workspace.at(tmp_path)
    _pool(ws)
    sel = select(ws, load_recipe("stage1_256p"), known_columns=column_owners())
    f = sel.funnel
    f.check()
    assert (f.rows_in, f.kept, f.rejected) == (9, 2, 7)
    assert f.removed_by_rule["broken"] == 1 and f.removed_by_rule["min_side"] == 2
    assert f.removed_by_rule["nsfw"] == 1 and f.removed_by_rule["exact_dup"] == 1
    assert f.removed_by_rule["near_dup"] == 1 and f.removed_by_rule["caption_invalid"] == 1
    assert {n["rule"] for n in f.not_applied} == {"rotation", "entropy", "low_info"}
    clip = next(r for r in f.rules if r.name == "clip")
    assert clip.removed == 0 and "null for every row" in clip.note
    kept = pa.concat_tables([pa.parquet.read_table(p) for p in sorted(sel.out_dir.glob("part-*.parquet"))])
    assert sorted(kept.column("uri").to_pylist()) == ["exact_a", "good1"]
    rej = read_rejected(ws, "stage1_256p", "near_dup", 10).to_pylist()
    assert rej[0]["uri"] == "near_small" and rej[0]["duplicate_of"] == "id_good1"
    both = read_rejected(ws, "stage1_256p", "nsfw", 10).to_pylist()
    assert {r["uri"] for r in both} == {"nsfw", "smallnsfw"}  # smallnsfw fails nsfw as a secondary reason
    assert (sel.meta_dir / "funnel.json").is_file() and "kept 2 of 9" in (sel.meta_dir / "funnel.txt").read_text()


def test_reselect_with_overrides_writes_beside_the_recipe_selection(tmp_path):
    ws = Workspace.at(tmp_path)
    _pool(ws)
    select(ws, load_recipe("stage1_256p"), known_columns=column_owners())
    loose = load_recipe("stage1_256p").with_overrides({"min_side.min": "50", "nsfw.max": "1.0"})
    f = select(ws, loose, known_columns=column_owners()).funnel
    # small (0x7777 << 32) is now in, and within 4 bits of exact_a (0x5555 << 32), which has more pixels
    assert f.kept == 3 and f.removed_by_rule["min_side"] == 1 and f.removed_by_rule["near_dup"] == 2
    assert not list((tmp_path / "curated").glob(".*"))  # no temporary folders left behind


def test_select_without_pool_says_what_to_run(tmp_path):
    with pytest.raises(WorkspaceError, match=r"flywheel score"):
        select(Workspace.at(tmp_path), load_recipe("stage1_256p"))


def test_select_refuses_a_pool_with_missing_or_short_partitions(tmp_path):
    from flywheel.workspace import IncompletePoolError

    ws = Workspace.at(tmp_path)
    _pool(ws)  # partitions 0 (5 rows) and 1 (4 rows) are scored
    ws.source_offset("folder:/data", 3, [5, 4, 256])  # ... but the source planned a third one
    with pytest.raises(IncompletePoolError, match=r"256 of 265 planned rows missing.*part-00002"):
        select(ws, load_recipe("stage1_256p"))
    (tmp_path / "pool" / "_sources.json").unlink()
    ws.source_offset("folder:/data", 2, [5, 6])  # partition 1 holds 4 of 6 planned rows
    with pytest.raises(IncompletePoolError, match=r"2 of 11 planned rows missing"):
        select(ws, load_recipe("stage1_256p"))
    (tmp_path / "pool" / "_sources.json").unlink()
    ws.source_offset("folder:/data", 2, [5, 4])
    assert select(ws, load_recipe("stage1_256p")).funnel.rows_in == 9


def test_select_refuses_a_corrupt_pool_shard_and_names_it(tmp_path):
    from flywheel.store.shards import CorruptShardError

    ws = Workspace.at(tmp_path)
    _pool(ws)
    shard = ws.pool.shard_path(1)
    data = bytearray(shard.read_bytes())
    data[100:164] = bytes(b ^ 0xFF for b in data[100:164])
    shard.write_bytes(bytes(data))
    with pytest.raises(CorruptShardError, match=r"part-00001\.parquet"):
        select(ws, load_recipe("stage1_256p"))


def test_pool_written_with_old_ids_gets_a_clear_error(tmp_path):
    import json

    ws = Workspace.at(tmp_path)
    _pool(ws)
    ws.pool.write_manifest()
    manifest = json.loads(ws.pool.manifest_path.read_text())
    ws.pool.manifest_path.write_text(json.dumps({**manifest, "schema_version": 1}))
    with pytest.raises(WorkspaceError, match=r"schema version 1.*new workspace"):
        select(ws, load_recipe("stage1_256p"))


def test_rejected_of_the_old_layout_says_to_reselect(tmp_path):
    ws = Workspace.at(tmp_path)
    old = ws.curated_dir("stage1_256p")
    old.mkdir(parents=True)
    (old / "rejected.parquet").write_bytes(b"")
    (old / "funnel.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"older flywheel.*re-run `flywheel select"):
        read_rejected(ws, "stage1_256p", None, 10)
