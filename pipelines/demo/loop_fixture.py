"""CONSTRUCTED DEMO FIXTURE: an evaluation Parquet and a user-feedback JSONL built from the demo's own images.

No model generated these "outputs": they are demo-corpus images (some blurred and darkened to play a
low-quality output) labelled with rewards and failure tags chosen by hand, in the real evaluation schema
(flywheel/evaluation.py), so that the loop has one case of each kind to route: a well-covered concept with a
bad output (RL), a concept absent from the pool (pretrain), and a complex instruction rendered cleanly but
incompletely (prompt). Real runs ingest what `flywheel evaluate` writes instead.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from flywheel.evaluation import check_evaluation_table, evaluation_schema
from flywheel.imaging import decode
from flywheel.workspace import Workspace

CHECKPOINT = "demo-fixture (no model)"


def _pool_image(ws: Workspace, caption_like: str, nth: int = 0) -> bytes:
    shards = [str(p) for p in ws.require_pool()]
    rows = (
        duckdb.connect()
        .execute(
            "SELECT image FROM read_parquet(?) WHERE caption ILIKE ? AND broken_reason IS NULL ORDER BY uri",
            [shards, f"%{caption_like}%"],
        )
        .fetchall()
    )
    if not rows:
        raise LookupError(f"the demo pool has no decodable image captioned like {caption_like!r}")
    return rows[nth % len(rows)][0]


OUTPUT_SIZE = (256, 256)  # a model renders every output of a prompt at one size; preference pairs need that


def _png(data: bytes, *, degrade: bool = False) -> bytes:
    decoded = decode(data, view_short_side=256)
    if decoded.rgb is None:
        raise ValueError(f"demo image does not decode: {decoded.broken_reason}")
    img = ImageOps.fit(Image.fromarray(decoded.rgb), OUTPUT_SIZE, Image.Resampling.BICUBIC)
    if degrade:
        img = ImageEnhance.Brightness(img.filter(ImageFilter.GaussianBlur(6))).enhance(0.35)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _row(
    prompt_id: str,
    seed: int,
    prompt: str,
    label: str | None,
    image: bytes,
    reward: float,
    tags: list[str],
    metrics: dict[str, float],
) -> dict[str, object]:
    return {
        "eval_id": f"demo-{prompt_id}-{seed}",
        "prompt_id": prompt_id,
        "prompt": prompt,
        "task": "T2I",
        "category": "object",
        "expected_text": None,
        "expected_label": label,
        "source_image": None,
        "output_image": image,
        "seed": seed,
        "metrics": list(metrics.items()),
        "reward": reward,
        "failure_tags": tags,
        "passed": not tags,
        "checkpoint": CHECKPOINT,
        "step": 0,
        "created_at": datetime(2026, 1, 1, tzinfo=UTC),
    }


def build_fixture(ws: Workspace, out_dir: Path) -> tuple[Path, Path]:
    """Write `evaluation.parquet` and `feedback.jsonl` (+ images) into `out_dir`; return both paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cat = "tabby cat"
    rows = [
        _row(
            "cat",
            1,
            "a ginger tabby cat looking at the camera",
            cat,
            _png(_pool_image(ws, cat, 0)),
            0.86,
            [],
            {"label_prob": 0.86, "sharpness": 0.9},
        ),
        _row(
            "cat",
            2,
            "a ginger tabby cat looking at the camera",
            cat,
            _png(_pool_image(ws, cat, 1)),
            0.78,
            [],
            {"label_prob": 0.78, "sharpness": 0.8},
        ),
        _row(
            "cat",
            3,
            "a ginger tabby cat looking at the camera",
            cat,
            _png(_pool_image(ws, cat, 2), degrade=True),
            0.21,
            ["low_quality"],
            {"label_prob": 0.4, "sharpness": 0.1},
        ),
        _row(
            "giraffe",
            1,
            "a giraffe eating leaves from an acacia tree on the savanna",
            "giraffe",
            _png(_pool_image(ws, "coins", 0)),
            0.08,
            ["object_missing"],
            {"label_prob": 0.01, "sharpness": 0.8},
        ),
        _row(
            "cups",
            1,
            'three coffee cups to the left of a cat, no saucers, and a sign reading "OPEN" and "CLOSED"',
            "coffee cup",
            _png(_pool_image(ws, "coffee cup", 0)),
            0.45,
            ["object_missing"],
            {"label_prob": 0.45, "sharpness": 0.9},
        ),
    ]
    table = check_evaluation_table(pa.Table.from_pylist(rows, schema=evaluation_schema()))
    eval_path = out_dir / "evaluation.parquet"
    pq.write_table(table, eval_path)
    images = {
        "rocket.png": _png(_pool_image(ws, "rocket", 0), degrade=True),
        "panda.png": _png(_pool_image(ws, "galaxies", 0)),
        "astronaut.png": _png(_pool_image(ws, "astronaut", 0)),
        "sign.png": _png(_pool_image(ws, "OPEN DAILY", 0)),
    }
    for name, data in images.items():
        (out_dir / name).write_bytes(data)
    feedback = [
        {
            "prompt": "a white rocket on the launch pad",
            "image": "rocket.png",
            "complaint": "the rocket is blurry and too dark",
            "rating": 2,
        },
        {
            "prompt": "a red panda sleeping on a branch",
            "image": "panda.png",
            "complaint": "that is not a red panda at all, it doesn't know what one looks like",
            "rating": 1,
        },
        {
            "prompt": "an astronaut in an orange suit holding two small flags, one in each hand",
            "image": "astronaut.png",
            "complaint": "it ignored the flags - I asked for two",
            "rating": 2,
        },
        {
            "prompt": 'a shop sign with the Thai text "ยินดีต้อนรับ"',
            "image": "sign.png",
            "complaint": "the letters are made up, it doesn't know Thai script",
            "rating": 1,
        },
    ]
    fb_path = out_dir / "feedback.jsonl"
    fb_path.write_text("".join(json.dumps(r) + "\n" for r in feedback), encoding="utf-8")
    return eval_path, fb_path
