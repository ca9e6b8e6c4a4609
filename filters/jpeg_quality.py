"""JPEG compression quality: IJG quality from the quantization tables, blockiness from the pixels.

Three facts, no model:
- `jpeg_quality`: the IJG quality (1-100) whose scaled standard tables are nearest to the file's own
  quantization tables (Pillow reads them from the header without decoding pixels). libjpeg, libjpeg-turbo,
  Pillow and OpenCV all scale the same Annex K tables, so their files match exactly; other encoders
  (Photoshop, cameras) get the nearest IJG equivalent. Null for non-JPEG files.
- `jpeg_blockiness`: strength of an 8-pixel periodic edge grid in the luma at full resolution: the mean
  absolute step across the strongest of the 8 column (row) phases divided by the median of the other seven,
  averaged over both axes. Uncompressed photos measure about 1.0-1.2; JPEG at q <= 30 about 1.3 and up; it
  survives re-saving as PNG or at a higher JPEG quality, which the tables cannot see (a quality-5 JPEG
  re-saved at q95 has q95 tables).
- `jpeg_double_compressed`: a JPEG whose blockiness exceeds what a single compression at its table quality
  leaves (bounds measured on the tune photos of bench/jpeg_quality.py): it was compressed before at a lower
  quality. A first pass at a higher quality than the second is invisible and also harmless. Null for
  non-JPEG files.

Blockiness needs the stored pixel grid, so this scorer decodes the luma itself at full resolution (JPEG:
the luma plane only, no chroma upsampling), within the pipeline's decode limits.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.base import CpuScorer, SampleBatch
from flywheel.schema import Column

# ITU-T T.81 Annex K tables in natural (row-major) order, the base of IJG quality scaling.
_LUMA = np.array(
    [
        [16, 11, 10, 16, 24, 40, 51, 61],
        [12, 12, 14, 19, 26, 58, 60, 55],
        [14, 13, 16, 24, 40, 57, 69, 56],
        [14, 17, 22, 29, 51, 87, 80, 62],
        [18, 22, 37, 56, 68, 109, 103, 77],
        [24, 35, 55, 64, 81, 104, 113, 92],
        [49, 64, 78, 87, 103, 121, 120, 101],
        [72, 92, 95, 98, 112, 100, 103, 99],
    ],
    dtype=np.float64,
).ravel()
_CHROMA = np.array(
    [[17, 18, 24, 47, 99, 99, 99, 99], [18, 21, 26, 66, 99, 99, 99, 99], [24, 26, 56, 99, 99, 99, 99, 99]]
    + [[47, 66, 99, 99, 99, 99, 99, 99]]
    + [[99] * 8] * 4,
    dtype=np.float64,
).ravel()

# Upper bound of single-compression blockiness per table quality (quality floor, bound), measured on the
# tune photos (max over images + 0.1, made non-increasing in quality): above it, an earlier pass at a lower
# quality left its grid. Below q30 a single pass is already so blocky that no earlier pass can be told apart.
SINGLE_PASS_BOUND: tuple[tuple[int, float], ...] = (
    (90, 1.32),
    (85, 1.62),
    (80, 1.69),
    (75, 1.80),
    (70, 1.92),
    (60, 2.17),
    (50, 2.40),
    (40, 2.73),
    (30, 3.11),
)
# Below this size the 8-phase statistics are too noisy to mean anything.
MIN_SIDE = 32


def ijg_tables(quality: int) -> tuple[np.ndarray, np.ndarray]:
    """Luma and chroma tables libjpeg writes for `quality` (jpeg_quality_scaling, baseline clamp)."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 / q if q < 50 else 200 - 2 * q
    luma = np.clip(np.floor((_LUMA * scale + 50) / 100), 1, 255)
    chroma = np.clip(np.floor((_CHROMA * scale + 50) / 100), 1, 255)
    return luma, chroma


_ALL_TABLES = [ijg_tables(q) for q in range(1, 101)]
_ALL_LUMA = np.stack([luma for luma, _ in _ALL_TABLES])  # (100, 64): row q-1 is quality q
_ALL_CHROMA = np.stack([chroma for _, chroma in _ALL_TABLES])


def estimate_quality(tables: Mapping[int, Sequence[int]]) -> int | None:
    """Nearest IJG quality to the file's tables (log-ratio distance, luma weighted over chroma).

    All 100 candidate qualities in one array pass (the lowest quality wins a tie, as a loop keeping the
    first strictly smaller distance would); each row's sum runs over its 64 contiguous entries, as the
    one-table sum does, so the distances are the same numbers.
    """
    if not tables:
        return None
    luma = np.asarray(tables.get(0, next(iter(tables.values()))), dtype=np.float64)
    chroma = np.asarray(tables[1], dtype=np.float64) if 1 in tables else None
    if luma.size != 64 or (chroma is not None and chroma.size != 64):
        return None
    err = np.abs(np.log(np.maximum(luma, 1) / _ALL_LUMA)).sum(axis=1)
    if chroma is not None:
        err = err + 0.5 * np.abs(np.log(np.maximum(chroma, 1) / _ALL_CHROMA)).sum(axis=1)
    return int(np.argmin(err)) + 1


def blockiness(gray: np.ndarray) -> float | None:
    """8-pixel grid strength of a full-resolution luma plane (about 1.0 when there is no grid)."""
    if gray.ndim != 2 or min(gray.shape) < MIN_SIDE:
        return None
    ratios = []
    for steps in _mean_steps(gray):
        n = (steps.size // 8) * 8
        phase = steps[:n].reshape(-1, 8).mean(axis=0)
        k = int(phase.argmax())
        others = np.delete(phase, k)
        # +0.1 grey level keeps flat images at 1.0 instead of dividing by ~0.
        ratios.append((float(phase[k]) + 0.1) / (float(np.median(others)) + 0.1))
    return float(np.mean(ratios))


def _mean_steps(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute step across each column boundary and each row boundary, float32.

    The values are bit for bit those of `np.abs(np.diff(gray.astype(np.float32), axis)).mean(...)` (the
    definition, and what earlier pools hold): every partial sum is a whole number below 2**24, so float32
    sums are exact in any order and equal the integer sums computed here; the division is numpy's own mean
    division (float32 sum / intp count). Integer absdiff + row/column sums in OpenCV cost about 0.2 ms on
    a 2 MP luma instead of 2.7 ms for the float32 copy, diff and transposed pass.
    """
    h, w = gray.shape
    if gray.dtype != np.uint8 or max(h, w) * 255 >= 2**24:  # outside the exact range: the definition itself
        g = gray.astype(np.float32)
        return np.abs(np.diff(g, axis=1)).mean(axis=0), np.abs(np.diff(g.T, axis=1)).mean(axis=0)
    import cv2

    cv2.setNumThreads(1)  # one thread per task: the scoring tasks already fill every core
    columns = cv2.reduce(cv2.absdiff(gray[:, 1:], gray[:, :-1]), 0, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    rows = cv2.reduce(cv2.absdiff(gray[1:], gray[:-1]), 1, cv2.REDUCE_SUM, dtype=cv2.CV_32S).ravel()
    out = []
    for sums, count in ((columns, h), (rows, w)):
        steps = sums.astype(np.float32)
        np.true_divide(steps, np.intp(count), out=steps, casting="unsafe")
        out.append(steps)
    return out[0], out[1]


def single_pass_bound(quality: int) -> float:
    for floor, bound in SINGLE_PASS_BOUND:
        if quality >= floor:
            return bound
    return float("inf")


def _full_luma(data: bytes, max_pixels: int) -> tuple[str | None, dict[int, Sequence[int]], np.ndarray | None]:
    with Image.open(io.BytesIO(data)) as img:
        fmt = img.format
        tables = dict(getattr(img, "quantization", None) or {}) if fmt == "JPEG" else {}
        w, h = img.size
        if w * h > max_pixels:
            return fmt, tables, None
        if fmt == "JPEG":
            img.draft("L", img.size)  # decode only the luma plane, at full scale
        img.load()
        gray = np.asarray(img if img.mode == "L" else img.convert("L"))  # no copy of a luma-only decode
    return fmt, tables, gray


class JpegQualityScorer(CpuScorer):
    name = "jpeg_quality"
    columns = (
        Column(
            "jpeg_quality",
            pa.int16(),
            "IJG 1-100",
            "Estimated JPEG quality from the quantization tables; null for non-JPEG files.",
            owner="jpeg_quality",
        ),
        Column(
            "jpeg_blockiness",
            pa.float32(),
            "ratio",
            "8-px grid edge strength of the full-res luma (~1.0 none; >= 1.3 visible JPEG blocks), any format.",
            owner="jpeg_quality",
        ),
        Column(
            "jpeg_double_compressed",
            pa.bool_(),
            "",
            "JPEG whose blockiness exceeds a single pass at its table quality; null below q30 or non-JPEG.",
            owner="jpeg_quality",
        ),
    )

    def __init__(self, max_pixels: int = 64_000_000) -> None:
        super().__init__()
        self.max_pixels = max_pixels

    @classmethod
    def from_config(cls, cfg: Any) -> JpegQualityScorer:
        return cls(max_pixels=int(cfg.limits.max_pixels))

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        out: dict[str, list[Any]] = {c.name: [] for c in self.columns}
        for data, d in zip(batch.images, batch.decoded, strict=True):
            quality: int | None = None
            block: float | None = None
            double: bool | None = None
            if data and d.broken_reason is None:
                try:
                    fmt, tables, gray = _full_luma(data, self.max_pixels)
                except Exception:  # the broken filter already reports undecodable files
                    fmt, tables, gray = None, {}, None
                if fmt == "JPEG":
                    quality = estimate_quality(tables)
                if gray is not None:
                    block = blockiness(gray)
                if quality is not None and block is not None and quality >= SINGLE_PASS_BOUND[-1][0]:
                    double = block > single_pass_bound(quality)
            out["jpeg_quality"].append(quality)
            out["jpeg_blockiness"].append(block)
            out["jpeg_double_compressed"].append(double)
        return out
