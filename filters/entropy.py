"""Entropy filter: Shannon entropy of the luma histogram catches blank, flat and near-empty images.

A photo sits around 6.5-7.8 bits, a black-on-white text render around 1-3 bits, a single
colour at 0 and a single colour with a few stray pixels well under 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from filters.base import CpuScorer, SampleBatch
from flywheel.schema import Column


def luma_entropy(gray: np.ndarray) -> float:
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


class EntropyScorer(CpuScorer):
    name = "entropy"
    view_short_side = 128  # histogram statistics are stable at this size
    columns = (
        Column(
            "entropy_bits",
            pa.float32(),
            "bits",
            "Shannon entropy of the 256-bin luma histogram (0..8).",
            owner="entropy",
        ),
        Column(
            "entropy_std", pa.float32(), "luma", "Standard deviation of luma; near 0 for flat images.", owner="entropy"
        ),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        bits: list[float | None] = []
        std: list[float | None] = []
        for d in batch.decoded:
            if not d.ok:
                bits.append(None)
                std.append(None)
                continue
            gray = d.gray_at(self.view_short_side)
            bits.append(luma_entropy(gray))
            std.append(float(gray.std()))
        return {"entropy_bits": bits, "entropy_std": std}
