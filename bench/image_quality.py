"""Do the image_quality scores move monotonically with graded distortions of real photos?

    python3 bench/image_quality.py [--out docs/image_quality.json]

For each report photo (`corpus.photo_sets.REPORT_PHOTOS`), each distortion type is applied at graded
strengths to the stored image (Gaussian blur sigma, additive Gaussian noise sigma, JPEG quality,
downscale-then-upscale factor), the result is encoded (PNG, or JPEG for the JPEG series), decoded by the
pipeline's `flywheel.imaging.decode` and scored by `filters.image_quality.ImageQualityScorer`. Reported: the
Spearman correlation between strength and each score, per photo, then min and mean over photos.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter
from scipy.stats import spearmanr

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from corpus.photo_sets import REPORT_PHOTOS, load_photo
from filters.base import SampleBatch
from filters.image_quality import ImageQualityScorer
from flywheel.imaging import decode

LEVELS: dict[str, list[float]] = {
    "blur_sigma": [0, 0.75, 1.5, 2.5, 4, 6],
    "noise_sigma": [0, 4, 8, 15, 25, 40],
    "jpeg_badness": [95, 75, 50, 30, 15, 5],  # strength rises as quality falls
    "rescale_factor": [1, 1.5, 2, 3, 4, 6],
}


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def distort(rgb: np.ndarray, kind: str, level: float, seed: int = 0) -> bytes:
    img = Image.fromarray(rgb)
    if kind == "blur_sigma":
        return _png(np.asarray(img.filter(ImageFilter.GaussianBlur(level)) if level else img))
    if kind == "noise_sigma":
        noisy = rgb.astype(np.float32) + np.random.default_rng(seed).normal(0, level, rgb.shape)
        return _png(np.clip(noisy, 0, 255).astype(np.uint8))
    if kind == "jpeg_badness":
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(level))
        return buf.getvalue()
    if kind == "rescale_factor":
        w, h = img.size
        small = img.resize((max(8, round(w / level)), max(8, round(h / level))), Image.BICUBIC)
        return _png(np.asarray(small.resize((w, h), Image.BICUBIC)))
    raise ValueError(kind)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    scorer = ImageQualityScorer()
    cols = scorer.column_names()
    rho: dict[str, dict[str, list[float]]] = {k: {c: [] for c in cols} for k in LEVELS}
    started = time.perf_counter()
    for name in REPORT_PHOTOS:
        rgb = load_photo(name)
        for kind, levels in LEVELS.items():
            items = [distort(rgb, kind, lv) for lv in levels]
            batch = SampleBatch(
                ids=[str(i) for i in range(len(items))],
                images=items,
                captions=[None] * len(items),
                decoded=[decode(b, ImageQualityScorer.view_short_side) for b in items],
            )
            out = scorer(batch)
            for c in cols:
                # strength = position in the series (the JPEG series lists falling quality)
                rho[kind][c].append(float(spearmanr(range(len(levels)), out[c]).statistic))
    seconds = time.perf_counter() - started
    rows = scorer.counters.rows
    result = {
        "report_photos": list(REPORT_PHOTOS),
        "levels": LEVELS,
        "spearman": {
            k: {c: {"min": min(v), "mean": float(np.mean(v))} for c, v in per.items()} for k, per in rho.items()
        },
        "scorer_ms_per_image": 1000 * scorer.counters.seconds / max(rows, 1),
        "seconds": seconds,
        "machine": machine(),
        "command": "python3 bench/image_quality.py",
    }
    emit(result, args.out)


if __name__ == "__main__":
    main()
