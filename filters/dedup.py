"""Deduplication scores: an exact content hash and a perceptual hash per sample.

Grouping happens globally at selection time (`flywheel.select.dedup_groups`), where the
64-bit perceptual hashes are split into bands so that near-duplicates are found by band
equality joins instead of all-pairs comparison.

pHash (as in Zauner 2010 / imagehash): luma squashed to 32x32, 2-D DCT, the 8x8
lowest frequencies compared with their median. Robust to resizing and recompression;
cropping more than a few percent or rotating changes it, by design.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from scipy.fft import dctn

from filters.base import CpuScorer, SampleBatch
from flywheel.schema import Column
from flywheel.select.dedup_groups import hamming64  # noqa: F401 - the filter's distance, defined once in the core


def phash64(gray: np.ndarray) -> int:
    """64-bit perceptual hash of a luma array, returned as a signed int64 (Parquet has no uint64 in DuckDB joins)."""
    small = Image.fromarray(gray).resize((32, 32), Image.Resampling.LANCZOS)
    coeffs = dctn(np.asarray(small, dtype=np.float64), type=2, norm="ortho")[:8, :8]
    bits = (coeffs > np.median(coeffs)).ravel()
    value = 0
    for bit in bits:
        value = (value << 1) | int(bit)
    return value - (1 << 64) if value >= (1 << 63) else value


class DedupScorer(CpuScorer):
    name = "dedup"
    view_short_side = 64
    columns = (
        Column(
            "dedup_sha256",
            pa.string(),
            "hex",
            "SHA-256 of the image bytes; equal values are exact duplicates.",
            owner="dedup",
        ),
        Column(
            "dedup_phash",
            pa.int64(),
            "bits",
            "64-bit DCT perceptual hash (signed int64); near-duplicates differ in few bits.",
            owner="dedup",
        ),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        sha: list[str | None] = []
        ph: list[int | None] = []
        for data, d in zip(batch.images, batch.decoded, strict=True):
            sha.append(hashlib.sha256(data).hexdigest() if data else None)
            ph.append(phash64(d.gray) if d.ok else None)
        return {"dedup_sha256": sha, "dedup_phash": ph}
