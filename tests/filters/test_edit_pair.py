"""The edit-pair filter: identical, unrelated and real edits of real photos, nulls, bounded source decode,
the scoring and score-missing paths, and the stage-2 recipe's edit rules (T2I rows pass them untouched)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont
from skimage import data
from typer.testing import CliRunner

from filters.base import SampleBatch
from filters.config import ScoringConfig
from filters.edit_pair import EditPairScorer, edit_metrics, instruction_issue
from filters.registry import column_registry, resolve
from flywheel.fonts import installed, script_fonts
from flywheel.imaging import DecodeLimits, decode
from flywheel.ingest import open_source
from flywheel.recipes import load_recipe
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import REJECTED, Workspace
from pipelines.cli import app
from pipelines.steps.score_stages import ScorePartition
from tests.images import encode, png_bomb_header

VIEW = 256


def _photo(name: str = "astronaut", side: int = 384) -> np.ndarray:
    img = Image.fromarray(np.asarray(getattr(data, name)())[..., :3])
    return np.asarray(img.resize((side, side * img.height // img.width)))


def _with_box(rgb: np.ndarray, colour: tuple[int, int, int] = (230, 20, 20)) -> np.ndarray:
    out = rgb.copy()
    h, w = out.shape[:2]
    out[h // 4 : h // 2, w // 4 : w // 2] = colour  # 1/16 of the image
    return out


def _with_text(rgb: np.ndarray) -> np.ndarray:
    img = Image.fromarray(rgb)
    found = installed(script_fonts("Latn", ["bold sans-serif"]))
    size = rgb.shape[0] // 8
    font = ImageFont.truetype(str(found[0][0]), size) if found else ImageFont.load_default(size)
    ImageDraw.Draw(img).text((20, 20), "SALE 50%", font=font, fill=(255, 255, 0))
    return np.asarray(img)


Pair = tuple[str | None, bytes | None, bytes | None, str | None]


def _score(pairs: list[Pair], scorer: EditPairScorer | None = None) -> list[dict[str, Any]]:
    """Score (task, target bytes, source bytes, instruction) rows the way `flywheel score` does."""
    scorer = scorer or EditPairScorer()
    batch = SampleBatch(
        ids=[str(i) for i in range(len(pairs))],
        images=[p[1] for p in pairs],
        captions=[p[3] for p in pairs],
        decoded=[decode(p[1], VIEW) for p in pairs],
        tasks=[p[0] for p in pairs],
        source_images=[p[2] for p in pairs],
        view_short_side=VIEW,
    )
    out = scorer(batch)
    return [{k: list(v)[i] for k, v in out.items()} for i in range(len(pairs))]


def test_identical_and_reencoded_pairs_change_nothing() -> None:
    src = encode(_photo(), "JPEG", quality=90)
    same, reencoded, resized = _score(
        [
            ("TI2I", src, src, "add a hat"),
            ("TI2I", encode(_photo(), "JPEG", quality=45), src, "add a hat"),
            ("TI2I", encode(_photo(side=256), "PNG"), src, "add a hat"),
        ]
    )
    assert same["edit_ssim"] == pytest.approx(1.0) and same["edit_changed_fraction"] == 0.0
    for row in (reencoded, resized):
        assert row["edit_ssim"] > 0.98
        assert row["edit_changed_fraction"] < 0.002
        assert row["edit_outside_ssim"] > 0.98


def test_real_edits_change_their_region_and_keep_the_rest() -> None:
    photo = _photo()
    src = encode(photo, "JPEG", quality=90)
    box, text = _score(
        [
            ("TI2I", encode(_with_box(photo), "JPEG", quality=90), src, "add a red square"),
            ("TI2I", encode(_with_text(photo), "JPEG", quality=90), src, "write SALE 50% in the corner"),
        ]
    )
    assert 0.04 < box["edit_changed_fraction"] < 0.12  # the box covers 1/16 = 0.0625 of the image
    assert box["edit_ssim"] < 0.98
    assert box["edit_outside_ssim"] > 0.97
    assert text["edit_changed_fraction"] > 0.005
    assert text["edit_outside_ssim"] > 0.97


def test_unrelated_photos_keep_no_structure() -> None:
    (row,) = _score([("TI2I", encode(_photo("chelsea"), "JPEG"), encode(_photo("astronaut"), "JPEG"), "make it a cat")])
    assert row["edit_changed_fraction"] > 0.8
    assert row["edit_ssim"] < 0.5
    assert row["edit_outside_ssim"] < 0.5  # below the recipe's floor


def test_grid_makes_sizes_and_aspects_comparable() -> None:
    photo = _photo()
    wide = np.asarray(Image.fromarray(photo).resize((600, 300)))
    ssim, changed, outside = edit_metrics(wide, photo)
    assert ssim > 0.95 and changed < 0.01 and outside > 0.95


def test_nulls_for_t2i_and_for_pairs_that_do_not_decode() -> None:
    src = encode(_photo(), "JPEG")
    t2i, no_source, bad_source, bad_target = _score(
        [
            ("T2I", src, None, "a photo of an astronaut"),
            ("TI2I", src, None, "add a hat"),
            ("TI2I", src, b"not an image", "add a hat"),
            ("TI2I", b"\xff\xd8 truncated", src, "a photo of an astronaut"),
        ]
    )
    assert all(v is None for v in t2i.values())
    for row in (no_source, bad_source, bad_target):
        assert row["edit_ssim"] is None and row["edit_changed_fraction"] is None and row["edit_outside_ssim"] is None
    assert no_source["edit_instruction_issue"] is None  # the text is still judged
    assert bad_target["edit_instruction_issue"] == "not_an_instruction"


def test_source_decode_is_bounded_by_the_configured_limits() -> None:
    target = encode(_photo(), "JPEG")
    strict = EditPairScorer.from_config(ScoringConfig(limits=DecodeLimits(max_pixels=10_000)))
    (small_limit,) = _score([("TI2I", encode(_photo(side=64), "PNG"), target, "add a hat")], strict)
    assert small_limit["edit_ssim"] is None  # 384x384 source is over 10k pixels: refused, not decoded
    (bomb,) = _score([("TI2I", target, png_bomb_header(), "add a hat")])
    assert bomb["edit_ssim"] is None


@pytest.mark.parametrize(
    ("text", "issue"),
    [
        (None, "missing"),
        ("   ", "empty"),
        ("IMG_1234.jpg", "placeholder"),
        ("http://example.com/edit", "url_only"),
        ("sky", "too_short"),
        ("a dog on the beach at sunset", "not_an_instruction"),
        ("一只猫坐在沙发上", "not_an_instruction"),
        ("add snow", None),
        ("make the sky purple", None),
        ("the car should be red", None),
        ("把天空变成紫色", None),
        ("Mach den Himmel blau", None),  # not English: not judged
        ("sunset mountains", None),  # no English function word: not judged
    ],
)
def test_instruction_issue(text: str | None, issue: str | None) -> None:
    assert instruction_issue(text) == issue


def test_columns_are_declared_once_with_unit_and_description() -> None:
    registry = column_registry()
    for column in EditPairScorer.columns:
        assert registry[column.name].owner == "edit_pair" and column.description
    assert {c.name: c.unit for c in EditPairScorer.columns}["edit_changed_fraction"] == "fraction"


def test_scoring_stage_passes_the_edit_source(tmp_path: Path) -> None:
    photo = _photo()
    (tmp_path / "src.jpg").write_bytes(encode(photo, "JPEG"))
    (tmp_path / "edit.jpg").write_bytes(encode(_with_box(photo), "JPEG"))
    (tmp_path / "edit.json").write_text(json.dumps({"task": "TI2I", "source": "src.jpg", "instruction": "add a box"}))
    (tmp_path / "plain.jpg").write_bytes(encode(_photo("chelsea"), "JPEG"))
    (tmp_path / "plain.txt").write_text("a cat")
    stage = ScorePartition(resolve(["edit_pair"]), [], ScoringConfig())
    (spec,) = open_source(str(tmp_path)).plan(1000)
    rows = {r["uri"].rsplit("/", 1)[-1]: r for r in stage.score_one(0, spec).to_pylist()}
    assert set(rows) == {"edit.jpg", "plain.jpg"}
    assert 0.04 < rows["edit.jpg"]["edit_changed_fraction"] < 0.12
    assert rows["edit.jpg"]["edit_instruction_issue"] is None
    assert rows["plain.jpg"]["edit_ssim"] is None and rows["plain.jpg"]["edit_instruction_issue"] is None


def test_score_missing_adds_the_edit_columns_to_an_existing_pool(tmp_path: Path) -> None:
    photo = _photo()
    src = encode(photo, "JPEG")
    ws = Workspace.at(tmp_path / "ws")
    table = pa.table(
        {
            "id": ["t2i", "edit"],
            "uri": ["t2i.jpg", "edit.jpg"],
            "partition": pa.array([0, 0], pa.int32()),
            "image": [src, encode(_with_box(photo), "JPEG")],
            "caption": ["an astronaut", "add a red box"],
            "task": ["T2I", "TI2I"],
            "source_image": pa.array([None, src], pa.binary()),
        }
    )
    ShardStore(ws.pool_dir).write(0, table, "fp0")
    res = CliRunner().invoke(app, ["score-missing", "-w", str(ws.root), "--filters", "edit_pair"])
    assert res.exit_code == 0, res.output
    out = pq.read_table(ws.pool.shard_path(0)).to_pylist()
    assert out[0]["edit_changed_fraction"] is None
    assert 0.04 < out[1]["edit_changed_fraction"] < 0.12 and out[1]["edit_outside_ssim"] > 0.97


def test_stage2_edit_rules_judge_ti2i_rows_only(tmp_path: Path) -> None:
    photo, other = _photo(), _photo("chelsea")
    src = encode(photo, "JPEG", quality=90)
    edited = encode(_with_box(photo), "JPEG", quality=90)
    rows = {
        # T2I rows that would fail every edit rule if the rules judged them: identical "pair", caption text
        "t2i_plain": ("T2I", src, None, "an astronaut in front of a flag"),
        "t2i_with_stray_source": ("T2I", src, src, "an astronaut in front of a flag"),
        "edit_good": ("TI2I", edited, src, "add a red box"),
        "edit_identical": ("TI2I", encode(photo, "JPEG", quality=60), src, "add a red box"),
        "edit_unrelated": ("TI2I", encode(other, "JPEG"), src, "add a red box"),
        "edit_caption_as_instruction": ("TI2I", edited, src, "an astronaut with a red box"),
        "edit_source_broken": ("TI2I", edited, b"\x89PNG broken", "add a red box"),
    }
    scored = _score(list(rows.values()))
    n = len(rows)
    table = pa.table(
        {
            "id": list(rows),
            "uri": list(rows),
            "partition": pa.array([0] * n, pa.int32()),
            "task": [r[0] for r in rows.values()],
            "caption": [r[3] for r in rows.values()],
            **{c.name: pa.array([s[c.name] for s in scored], c.dtype) for c in EditPairScorer.columns},
        }
    )
    ws = Workspace.at(tmp_path / "ws")
    ShardStore(ws.pool_dir).write(0, table, "fp0")
    sel = select(ws, load_recipe("stage2_256p_edit"))
    applied = {r.name for r in sel.funnel.rules}
    assert {"edit_source_decodes", "edit_changed", "edit_kept_outside", "edit_instruction"} <= applied
    reasons = {r["id"]: r["reason"] for r in pq.read_table(sel.meta_dir / REJECTED).to_pylist()}
    assert reasons == {
        "edit_identical": "edit_changed",
        "edit_unrelated": "edit_kept_outside",
        "edit_caption_as_instruction": "edit_instruction",
        "edit_source_broken": "edit_source_decodes",
    }
    kept = pa.concat_tables([pq.read_table(p) for p in sorted(sel.out_dir.glob("part-*.parquet"))])
    assert set(kept.column("id").to_pylist()) == {"t2i_plain", "t2i_with_stray_source", "edit_good"}
