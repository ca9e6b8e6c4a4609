"""Deduplication scores: an exact content hash and a perceptual hash per sample.

Grouping happens globally at selection time (`flywheel.select.dedup_groups`), where the
64-bit perceptual hashes are split into bands so that near-duplicates are found by band
equality joins instead of all-pairs comparison.

pHash (as in Zauner 2010 / imagehash): luma squashed to 32x32, 2-D DCT, the 8x8
lowest frequencies compared with their median. Robust to resizing and recompression;
cropping more than a few percent or rotating changes it, by design.

Crops: a scraped copy is often trimmed by a few percent a side, which moves a full-view pHash by up to
~25 bits. Two more hashes, of the central 92% and 84% of the view, match such a copy's full-view hash
(a copy trimmed ~8% is close to the original's 92% centre), so selection compares the full view of one
image with all three views of the other and takes the smallest distance (`flywheel.select.dedup_groups`).
On the hard corpus this takes the 90th percentile of near-duplicate distances from 14-16 bits to 8, while
no two distinct images came closer than 10 (docs/filter_quality.md).

All hashes come from the 128 px luma view every run derives from the fixed scoring decode, so they do not
depend on which other filters run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from filters.base import CpuScorer, SampleBatch
from flywheel.phash import phash64
from flywheel.schema import Column
from flywheel.select.dedup_groups import hamming64  # noqa: F401 - the filter's distance, defined once in the core

HASH_VIEW = 128  # luma view side the hashes are computed from
CENTRE_CROPS = (0.92, 0.84)  # fractions of each side kept by the centre-crop hashes


def centre_crop(gray: np.ndarray, fraction: float) -> np.ndarray:
    """The central `fraction` of each side (at least 8 px)."""
    h, w = gray.shape[:2]
    ch, cw = max(8, round(h * fraction)), max(8, round(w * fraction))
    top, left = (h - ch) // 2, (w - cw) // 2
    return gray[top : top + ch, left : left + cw]


class DedupScorer(CpuScorer):
    name = "dedup"
    config_section = None  # reads no config section: the hash view and size are fixed
    view_short_side = HASH_VIEW
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
        Column(
            "dedup_phash_c92",
            pa.int64(),
            "bits",
            "pHash of the central 92% of each side: matches the full-view hash of a copy trimmed a few percent.",
            owner="dedup",
        ),
        Column(
            "dedup_phash_c84",
            pa.int64(),
            "bits",
            "pHash of the central 84% of each side: matches a copy trimmed up to ~8% a side.",
            owner="dedup",
        ),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        sha: list[str | None] = []
        views: list[list[int | None]] = [[], [], []]
        for data, d in zip(batch.images, batch.decoded, strict=True):
            sha.append(hashlib.sha256(data).hexdigest() if data else None)
            if not d.ok:
                for column in views:
                    column.append(None)
                continue
            gray = d.gray_at(self.view_short_side)
            views[0].append(phash64(gray))
            for column, fraction in zip(views[1:], CENTRE_CROPS, strict=True):
                column.append(phash64(centre_crop(gray, fraction)))
        return {"dedup_sha256": sha, "dedup_phash": views[0], "dedup_phash_c92": views[1], "dedup_phash_c84": views[2]}
