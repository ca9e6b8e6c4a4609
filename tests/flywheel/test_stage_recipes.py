"""The stage 2-5 recipes select from one scored pool, and the trainer's GPU stages name them and start."""

from __future__ import annotations

import hashlib
import json

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flywheel.recipes import builtin_recipes, load_recipe
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from pipelines.cli import app
from tests.trainer.fixtures import fixture_rows
from tests.trainer.tiny import cpu_scaled
from trainer.config import load_stage

# uri -> (task, min_side, jpeg_quality, double, blockiness, brisque, synth)
POOL = {
    "p2048": ("T2I", 2048, 92, False, 1.05, 15.0, False),
    "p1024": ("T2I", 1024, None, None, 1.02, 20.0, False),
    "p512": ("T2I", 512, 85, False, 1.10, 25.0, False),
    "p256": ("T2I", 256, 90, False, 1.05, 18.0, False),
    "synth": ("T2I", 120, None, None, 1.01, 30.0, True),
    "lowq": ("T2I", 1024, 40, False, 1.60, 30.0, False),
    "double": ("T2I", 1024, 95, True, 2.50, 40.0, False),
    "resaved": ("T2I", 1024, None, None, 2.10, 35.0, False),
    "noisy": ("T2I", 1024, 90, False, 1.05, 70.0, False),
    "blurry": ("T2I", 1024, 90, False, 1.05, 20.0, False),
    "edit": ("TI2I", 1024, 90, False, 1.05, 20.0, False),
}
EXPECTED = {
    "stage1_256p": {"p2048", "p1024", "p512", "p256", "lowq", "double", "resaved", "noisy", "blurry"},
    "stage2_256p_edit": {"p2048", "p1024", "p512", "p256", "lowq", "double", "resaved", "noisy", "blurry", "edit"},
    "stage3_512p": {"p2048", "p1024", "p512", "synth", "lowq", "double", "resaved", "noisy", "blurry", "edit"},
    "stage4_1024p": {"p2048", "p1024", "p512", "edit"},
    "stage5_2048p": {"p2048"},
}
GPU_STAGES = ("pretrain_256_512", "continual_512_2048", "sft")


def _phash(i: int) -> int:
    """A distinct 63-bit hash per row (random-like: ~32 bits apart), so no two rows are near-duplicates."""
    return int.from_bytes(hashlib.sha256(str(i).encode()).digest()[:8], "little") & 0x7FFFFFFFFFFFFFFF


def _pool(ws: Workspace) -> None:
    base = fixture_rows(len(POOL) - 1, 1, sizes=((32, 32),))  # real images; the last one is a TI2I pair
    rows = []
    for i, (row, (uri, spec)) in enumerate(zip(base, POOL.items(), strict=True)):
        task, side, q, double, block, brisque, synth = spec
        assert row["task"] == task
        meta = {"synth": {"kind": "pure"}} if synth else {}
        rows.append(
            {
                **row,
                "uri": uri,
                "id": f"{row['id']}",
                "meta": json.dumps(meta),
                "broken_reason": None,
                "resolution_min_side": side,
                "resolution_aspect": 1.0,
                "resolution_megapixels": side * side / 1e6,
                "nsfw_score": 0.01,
                "rotation_net_upright_prob": 0.9,
                "entropy_bits": 6.0,
                "entropy_detail": 0.5,
                "clip_score": None,
                "caption_issue": None,
                "caption_tokens": 10,
                "dedup_sha256": f"sha{i}",
                "dedup_phash": _phash(i),
                "dedup_phash_c92": _phash(i),
                "dedup_phash_c84": _phash(i),
                "jpeg_quality": q,
                "jpeg_double_compressed": double,
                "jpeg_blockiness": block,
                "iq_brisque": brisque,
                "v1_blur": 0.8 if uri == "blurry" else 0.2,
                "v1_luma_p99": 240.0,
                "v1_luma_p01": 5.0,
                "v1_saturation_clipped": 0.01,
                "v1_saturation_p95": 0.0 if uri == "synth" else 0.8,
                "v1_saturation_p95_64px": 0.0 if uri == "synth" else 0.75,
                "v1_chroma_detail": 0.8,
                "v1_oversaturation": 0.6,
                "v1_texture": 3.0,
                "v1_noise_like": 2.0,
                "text_area_fraction": 0.3 if uri == "synth" else 0.0,
                "face_area_fraction": 0.0,
                "aesthetic_score": float(i),
                # edit_pair columns: null for T2I rows, a real edit's values for the TI2I pair
                "edit_ssim": 0.9 if task == "TI2I" else None,
                "edit_changed_fraction": 0.2 if task == "TI2I" else None,
                "edit_outside_ssim": 0.99 if task == "TI2I" else None,
                "edit_instruction_issue": None,
            }
        )
    types = {
        "resolution_min_side": pa.int32(),
        "resolution_aspect": pa.float32(),
        "resolution_megapixels": pa.float32(),
        "nsfw_score": pa.float32(),
        "rotation_net_upright_prob": pa.float32(),
        "entropy_bits": pa.float32(),
        "entropy_detail": pa.float32(),
        "clip_score": pa.float32(),
        "caption_issue": pa.string(),
        "broken_reason": pa.string(),
        "caption_tokens": pa.int32(),
        "dedup_phash": pa.int64(),
        "dedup_phash_c92": pa.int64(),
        "dedup_phash_c84": pa.int64(),
        "jpeg_quality": pa.int16(),
        "jpeg_double_compressed": pa.bool_(),
        "jpeg_blockiness": pa.float32(),
        "iq_brisque": pa.float32(),
        **{c: pa.float32() for c in ("v1_blur", "v1_luma_p99", "v1_luma_p01", "v1_saturation_clipped")},
        **{
            c: pa.float32()
            for c in ("v1_saturation_p95", "v1_saturation_p95_64px", "v1_chroma_detail", "v1_oversaturation")
        },
        "v1_texture": pa.float32(),
        "v1_noise_like": pa.float32(),
        **{c: pa.float32() for c in ("text_area_fraction", "face_area_fraction", "aesthetic_score")},
        **{c: pa.float32() for c in ("edit_ssim", "edit_changed_fraction", "edit_outside_ssim")},
        "edit_instruction_issue": pa.string(),
        "source_image": pa.binary(),
        "source_uri": pa.string(),
    }
    table = pa.table({k: pa.array([r[k] for r in rows], types.get(k)) for k in rows[0]})
    ShardStore(ws.pool_dir).write(0, table, "fp0")


@pytest.fixture
def pool_ws(tmp_path) -> Workspace:
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    return ws


def _kept(sel) -> set[str]:
    files = sorted(sel.out_dir.glob("part-*.parquet"))
    return set(pa.concat_tables([pa.parquet.read_table(p) for p in files]).column("uri").to_pylist())


def test_each_stage_recipe_selects_from_one_pool(pool_ws: Workspace) -> None:
    assert set(EXPECTED) <= set(builtin_recipes())
    for name, expected in EXPECTED.items():
        recipe = load_recipe(name)
        assert all(r.why for r in recipe.rules), name
        sel = select(pool_ws, recipe)
        sel.funnel.check()
        assert not sel.funnel.not_applied, (name, sel.funnel.not_applied)
        assert _kept(sel) == expected, name
    reasons = select(pool_ws, load_recipe("stage4_1024p")).funnel.by_reason
    assert {"jpeg_quality", "jpeg_double", "resaved_jpeg", "brisque", "min_side", "blur"} <= set(reasons)


def test_gpu_stages_name_builtin_recipes_and_start_on_cpu(pool_ws: Workspace, tmp_path) -> None:
    for stage in GPU_STAGES:
        cfg = load_stage(stage)
        assert cfg.data.recipes and all(r in builtin_recipes() for r in cfg.data.recipes), stage
    for recipe in load_stage("continual_512_2048").data.recipes:
        select(pool_ws, load_recipe(recipe))
    path = cpu_scaled("continual_512_2048", tmp_path / "continual_cpu.yaml")
    res = CliRunner().invoke(app, ["train", "-w", str(pool_ws.root), "--stage", str(path), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "trained 1 steps" in res.output


def test_sft_is_strict_then_keeps_the_top_of_each_category_and_its_stage_starts(pool_ws: Workspace, tmp_path) -> None:
    """Stage 6: the strict filters leave p2048, p1024, p512 and the edit; the distribution filter then keeps the
    cleaner half by BRISQUE and the best 30% of that by aesthetics, within each category."""
    sel = select(pool_ws, load_recipe("sft"))
    f = sel.funnel
    f.check()
    assert not f.not_applied and f.by_category["general"]["in"] == 10 and f.by_category["text"]["in"] == 1
    assert f.removed_by_rule["min_side"] == 2 and f.removed_by_rule["top_quality"] == 2
    assert f.removed_by_rule["top_aesthetics"] == 1 and f.kept == 1
    # the cleaner half is p2048 (BRISQUE 15) plus one of the two at 20 (p1024, edit; ties go by id); the aesthetic
    # top 30% of those two is the one at 20, since p2048 has the lowest aesthetic_score of the pool
    kept = _kept(sel)
    assert len(kept) == 1 and kept <= {"p1024", "edit"}
    assert load_stage("sft").data.recipes == ["sft"]
    # the one kept row is T2I; the stage mixes TI2I rows when the selection has some
    path = cpu_scaled("sft", tmp_path / "sft_cpu.yaml", batch_size=1, allow_missing_tasks=True)
    res = CliRunner().invoke(app, ["train", "-w", str(pool_ws.root), "--stage", str(path), "--threads", "1"])
    assert res.exit_code == 0, res.output
    assert "trained 1 steps" in res.output
