"""The one 64-bit DCT perceptual hash, in the core so the dedup filter and the corpus generator share it.

Why here: filters/ and corpus/ may both import flywheel/ but not each other (docs/architecture.md), and the
generator must measure near-duplicate distance with exactly the hash the filter stores.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn


def phash64(gray: np.ndarray) -> int:
    """64-bit perceptual hash of a luma array, returned as a signed int64 (Parquet has no uint64 in DuckDB joins)."""
    small = Image.fromarray(gray).resize((32, 32), Image.Resampling.LANCZOS)
    coeffs = dctn(np.asarray(small, dtype=np.float64), type=2, norm="ortho")[:8, :8]
    bits = (coeffs > np.median(coeffs)).ravel()
    value = int.from_bytes(np.packbits(bits).tobytes(), "big")
    return value - (1 << 64) if value >= (1 << 63) else value
