"""Accuracy of the jpeg_quality filter on real photos, JPEGs written by Pillow and by OpenCV.

    python3 bench/jpeg_quality.py [--out docs/jpeg_quality.json]

Tune set (`corpus.photo_sets.TUNE_PHOTOS`): prints the single-pass blockiness bound per quality that
`filters.jpeg_quality.SINGLE_PASS_BOUND` encodes. Report set (`REPORT_PHOTOS`, other source images):
- quality error |estimate - true| for q = 10, 15, ..., 95 per encoder;
- blockiness of lossless re-saves (PNG) of JPEGs at q <= 30 vs never-compressed PNGs (flag at >= 1.3);
- double compression (first pass q1 in 5..50, second q2 in 80..95, q2 > q1 + 30) vs single passes.
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from corpus.photo_sets import REPORT_PHOTOS, TUNE_PHOTOS, load_photo
from filters.jpeg_quality import blockiness, estimate_quality, single_pass_bound

QUALITIES = list(range(10, 100, 5))
PNG_FLAG = 1.3


def pil_jpeg(rgb: np.ndarray, q: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "JPEG", quality=q)
    return buf.getvalue()


def cv2_jpeg(rgb: np.ndarray, q: int) -> bytes:
    import cv2

    ok, enc = cv2.imencode(".jpg", rgb[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), q])
    assert ok
    return enc.tobytes()


def facts(data: bytes) -> tuple[int | None, float | None, np.ndarray]:
    with Image.open(io.BytesIO(data)) as img:
        q = estimate_quality(dict(img.quantization)) if img.format == "JPEG" else None
        rgb = np.asarray(img.convert("RGB"))
    return q, blockiness(np.asarray(Image.fromarray(rgb).convert("L"))), rgb


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def calibrate(names: tuple[str, ...]) -> dict[int, float]:
    bound: dict[int, float] = {}
    for name in names:
        rgb = load_photo(name)
        for q in QUALITIES:
            _, b, _ = facts(pil_jpeg(rgb, q))
            bound[q] = max(bound.get(q, 0.0), float(b or 0.0))
    return bound


def pr(tp: int, fp: int, fn: int) -> dict[str, float]:
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "tp": tp, "fp": fp, "fn": fn}


def report(names: tuple[str, ...]) -> dict[str, object]:
    errors: dict[str, list[int]] = {"pillow": [], "opencv": []}
    tp = fp = fn = 0  # lossless re-saves of JPEG q <= 30 flagged by blockiness
    dtp = dfp = dfn = 0  # double compression
    for name in names:
        rgb = load_photo(name)
        for enc_name, enc in (("pillow", pil_jpeg), ("opencv", cv2_jpeg)):
            for q in QUALITIES:
                est, b, _ = facts(enc(rgb, q))
                errors[enc_name].append(abs(int(est or 0) - q))
                flagged = b is not None and est is not None and b > single_pass_bound(est)
                dfp += int(flagged)
        _, b, _ = facts(png(rgb))
        fp += int(b is not None and b >= PNG_FLAG)
        for q in (5, 10, 20, 30):
            _, _, decoded = facts(pil_jpeg(rgb, q))
            _, b, _ = facts(png(decoded))
            hit = b is not None and b >= PNG_FLAG
            tp += int(hit)
            fn += int(not hit)
        for q1 in (5, 10, 20, 30, 50):
            for q2 in (80, 90, 95):
                if q2 <= q1 + 30:
                    continue
                _, _, first = facts(pil_jpeg(rgb, q1))
                est, b, _ = facts(pil_jpeg(first, q2))
                hit = b is not None and est is not None and b > single_pass_bound(est)
                dtp += int(hit)
                dfn += int(not hit)
    return {
        "quality_abs_error": {
            k: {"max": int(max(v)), "mean": float(np.mean(v)), "within_5": float(np.mean(np.array(v) <= 5))}
            for k, v in errors.items()
        },
        "resaved_png_blockiness_ge_1.3": pr(tp, fp, fn),
        "double_compression": pr(dtp, dfp, dfn),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    result = {
        "tune_photos": list(TUNE_PHOTOS),
        "report_photos": list(REPORT_PHOTOS),
        "tune_single_pass_blockiness_max": calibrate(TUNE_PHOTOS),
        "report": report(REPORT_PHOTOS),
        "machine": machine(),
        "command": "python3 bench/jpeg_quality.py",
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
