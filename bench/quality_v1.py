"""Precision/recall of the v1 quality filters: thresholds tuned on one labeled set, reported on another.

    python3 bench/quality_v1.py [--crops 6] [--out docs/quality_v1.json]

Each set is built from its own photos (`corpus.photo_sets`: TUNE_PHOTOS vs REPORT_PHOTOS, no source image in
both): random crops (256-512 px) of each photo, each kept clean, mildly changed (blur sigma 0.6, brightness
x0.8-1.2, colour x0.8-1.3 or noise sigma 3: negatives) and damaged once per category (positives): blur
(Gaussian sigma 2.5-6), dark (mean luma 10-40, and at most half the crop's own mean, so a naturally dark
photo is darkened too, not brightened to the target), bright (mean luma 215-245, and at least halfway from the
crop's own mean to white), oversaturated (colour x2.5-4), undersaturated (colour x0.05-0.25; colour photos
only), noise-like (pure noise images or noise sigma 35-70). Per category the negatives are the clean and mild
images. The threshold maximising F1 on the tune set (middle of the best range) is applied unchanged to the
report set. Under-saturation has a second, monochrome guard (`v1_saturation_p95_64px`), tuned first on the
tune set the same way: undersaturated crops against the clean and mild crops of the grey photos.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import emit, machine
from corpus.photo_sets import REPORT_PHOTOS, TUNE_PHOTOS, load_photo
from filters.base import SampleBatch
from filters.quality_v1 import QualityV1Scorer
from flywheel.imaging import decode

# category -> (column, direction): "above" flags score > t, "below" flags score < t (and > 0 for saturation)
RULES: dict[str, tuple[str, str]] = {
    "blur": ("v1_blur", "above"),
    "dark": ("v1_luma_p99", "below"),
    "bright": ("v1_luma_p01", "above"),
    "oversaturated": ("v1_oversaturation", "above"),
    "undersaturated": ("v1_chroma_detail", "below"),
    "noise_like": ("v1_noise_like", "above"),
}
COLOUR_ONLY = {"oversaturated", "undersaturated"}
GUARD = "v1_saturation_p95_64px"  # under-saturation counts only above this: below it the image is monochrome


def _png(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


def _crop(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    h, w = rgb.shape[:2]
    side = int(rng.integers(min(256, min(h, w)), min(512, min(h, w)) + 1))
    top, left = int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1))
    return rgb[top : top + side, left : left + side]


def _set_mean(arr: np.ndarray, target: float) -> np.ndarray:
    x = arr.astype(np.float32)
    mean = float(x.mean()) or 1.0
    if target < mean:
        return np.clip(x * (target / mean), 0, 255).astype(np.uint8)
    inv = 255 - x
    return np.clip(255 - inv * ((255 - target) / max(float(inv.mean()), 1.0)), 0, 255).astype(np.uint8)


def _colour(arr: np.ndarray, factor: float) -> np.ndarray:
    return np.asarray(ImageEnhance.Color(Image.fromarray(arr)).enhance(factor))


def _noise(arr: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(arr + rng.normal(0, sigma, arr.shape), 0, 255).astype(np.uint8)


def damage(kind: str, arr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if kind == "blur":
        return np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(float(rng.uniform(2.5, 6)))))
    if kind == "dark":
        return _set_mean(arr, min(float(rng.uniform(10, 40)), float(arr.mean()) / 2))
    if kind == "bright":
        own = float(arr.mean())
        return _set_mean(arr, max(float(rng.uniform(215, 245)), (own + 255) / 2))
    if kind == "oversaturated":
        return _colour(arr, float(rng.uniform(2.5, 4)))
    if kind == "undersaturated":
        return _colour(arr, float(rng.uniform(0.05, 0.25)))
    if kind == "noise_like":
        if rng.random() < 0.5:
            base = np.full(arr.shape, float(rng.uniform(60, 200)), np.float32)
            return _noise(base, float(rng.uniform(40, 80)), rng)
        return _noise(arr, float(rng.uniform(35, 70)), rng)
    if kind == "mild":
        pick = int(rng.integers(4))
        if pick == 0:
            return np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(0.6)))
        if pick == 1:
            return np.clip(arr * float(rng.uniform(0.8, 1.2)), 0, 255).astype(np.uint8)
        if pick == 2:
            return _colour(arr, float(rng.uniform(0.8, 1.3)))
        return _noise(arr, 3.0, rng)
    raise ValueError(kind)


Item = tuple[str, bool, bytes]  # label, from a colour photo, PNG bytes
Scored = tuple[str, bool, dict[str, float]]


def build(names: tuple[str, ...], crops: int, seed: int) -> list[Item]:
    rng = np.random.default_rng(seed)
    items: list[Item] = []
    for name in names:
        photo = load_photo(name)
        colour = bool(np.abs(photo[..., 0].astype(int) - photo[..., 1]).mean() > 1)
        for _ in range(crops):
            arr = np.ascontiguousarray(_crop(photo, rng))
            items.append(("clean", colour, _png(arr)))
            items.append(("mild", colour, _png(damage("mild", arr, rng))))
            for kind in RULES:
                if kind in COLOUR_ONLY and not colour:
                    continue
                items.append((kind, colour, _png(damage(kind, arr, rng))))
    return items


def scores(items: list[Item]) -> tuple[list[Scored], float]:
    """Every item's columns, and the scorer's own time per image in ms (decode excluded)."""
    scorer = QualityV1Scorer()
    out: list[Scored] = []
    spent = 0.0
    for start in range(0, len(items), 32):
        chunk = items[start : start + 32]
        batch = SampleBatch(
            ids=[str(i) for i in range(len(chunk))],
            images=[b for _, _, b in chunk],
            captions=[None] * len(chunk),
            decoded=[decode(b, QualityV1Scorer.view_short_side) for _, _, b in chunk],
        )
        t0 = time.perf_counter()
        res = scorer(batch)
        spent += time.perf_counter() - t0
        for i, (label, colour, _) in enumerate(chunk):
            out.append((label, colour, {c: res[c][i] for c in scorer.column_names()}))
    return out, 1000 * spent / max(len(items), 1)


def flags(direction: str, value: float, t: float) -> bool:
    return value > t if direction == "above" else value < t


def _subset(scored: list[Scored], kind: str, guard: float | None = None) -> list[tuple[bool, float]]:
    """(positive, value) for the category's positives and the clean/mild negatives.

    With a guard (under-saturation), images at or below it on `GUARD` are monochrome: never flagged.
    """
    column, direction = RULES[kind]
    never = float("inf") if direction == "below" else float("-inf")
    return [
        (label == kind, never if guard is not None and s[GUARD] <= guard else s[column])
        for label, _, s in scored
        if label in (kind, "clean", "mild")
    ]


def _guard_subset(scored: list[Scored]) -> list[tuple[bool, float]]:
    """Under-saturated crops (positives) against the clean and mild crops of the grey photos, on `GUARD`."""
    return [
        (label == "undersaturated", s[GUARD])
        for label, colour, s in scored
        if label == "undersaturated" or (label in ("clean", "mild") and not colour)
    ]


def tune(data: list[tuple[bool, float]], direction: str) -> float:
    values = sorted({v for _, v in data if np.isfinite(v)})
    cands = [(a + b) / 2 for a, b in pairwise(values)]
    f1s = []
    for t in cands:
        m = pr(data, direction, t)
        f1s.append(2 * m["precision"] * m["recall"] / max(m["precision"] + m["recall"], 1e-9))
    best = max(f1s)
    tied = [t for t, f in zip(cands, f1s, strict=True) if f >= best - 1e-12]
    return (min(tied) + max(tied)) / 2  # middle of the best range: largest margin to both classes


def pr(data: list[tuple[bool, float]], direction: str, t: float) -> dict[str, float]:
    tp = sum(1 for pos, v in data if pos and flags(direction, v, t))
    fp = sum(1 for pos, v in data if not pos and flags(direction, v, t))
    fn = sum(1 for pos, v in data if pos and not flags(direction, v, t))
    return {"precision": tp / max(tp + fp, 1), "recall": tp / max(tp + fn, 1), "tp": tp, "fp": fp, "fn": fn}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--crops", type=int, default=6)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tune_scored, tune_ms = scores(build(TUNE_PHOTOS, args.crops, seed=0))
    report_scored, report_ms = scores(build(REPORT_PHOTOS, args.crops, seed=1))
    result: dict[str, object] = {"tune_photos": list(TUNE_PHOTOS), "report_photos": list(REPORT_PHOTOS)}
    result["scorer_ms_per_image"] = round((tune_ms + report_ms) / 2, 2)
    table: dict[str, dict[str, object]] = {}
    for kind, (column, direction) in RULES.items():
        guard = tune(_guard_subset(tune_scored), "above") if kind == "undersaturated" else None
        t = tune(_subset(tune_scored, kind, guard), direction)
        table[kind] = {
            "column": column,
            "direction": direction,
            "threshold": round(t, 4),
            "tune": pr(_subset(tune_scored, kind, guard), direction, t),
            "report": pr(_subset(report_scored, kind, guard), direction, t),
        }
        if guard is not None:
            table[kind]["guard"] = {"column": GUARD, "threshold": round(guard, 4)}
    result["categories"] = table
    result["machine"] = machine()
    result["command"] = f"python3 bench/quality_v1.py --crops {args.crops}"
    emit(result, args.out)


if __name__ == "__main__":
    main()
