"""Two disjoint sets of real photos (scikit-image ships them offline) for tune/report splits.

Filters whose thresholds are tuned (JPEG quality bounds, image-quality and v1 quality filters) are tuned on
`TUNE_PHOTOS` and reported on `REPORT_PHOTOS`: different source images, never crops of the same one.
"""

from __future__ import annotations

from functools import cache

import numpy as np
import skimage.data

TUNE_PHOTOS: tuple[str, ...] = ("astronaut", "coffee", "camera", "brick", "grass", "retina")
REPORT_PHOTOS: tuple[str, ...] = ("chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "gravel", "coins")


@cache
def load_photo(name: str) -> np.ndarray:
    """The named scikit-image photo as HxWx3 uint8 RGB (grey photos are replicated to three channels)."""
    arr = np.asarray(getattr(skimage.data, name)())
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3].astype(np.uint8))
