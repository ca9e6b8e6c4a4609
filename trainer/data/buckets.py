"""Resolution/aspect buckets: every sample trains at a size close to its own shape, without distortion.

Why buckets: cropping every image to a square throws away the composition of wide and tall images (and cuts
text), so each sample is assigned the bucket of the stage's resolutions whose aspect ratio is nearest to its
own (in log space) and whose area it can fill without upscaling, when possible; it is resized to cover the
bucket and centre-cropped. All bucket sides are multiples of the latent stride (patch x VAE factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True, order=True)
class Bucket:
    resolution: int
    width: int
    height: int

    @property
    def key(self) -> str:
        return f"{self.resolution}:{self.width}x{self.height}"

    @property
    def aspect(self) -> float:
        return self.width / self.height

    @classmethod
    def from_key(cls, key: str) -> Bucket:
        res, dims = key.split(":")
        w, h = dims.split("x")
        return cls(int(res), int(w), int(h))


def make_buckets(resolutions: list[int], aspect_ratios: list[float], multiple: int) -> list[Bucket]:
    """Buckets of area about resolution**2 at each aspect ratio, sides rounded to `multiple`."""
    out = set()
    for res in resolutions:
        for aspect in aspect_ratios:
            w = max(multiple, round(res * math.sqrt(aspect) / multiple) * multiple)
            h = max(multiple, round(res / math.sqrt(aspect) / multiple) * multiple)
            out.add(Bucket(res, w, h))
    return sorted(out)


def assign_buckets(widths: np.ndarray, heights: np.ndarray, buckets: list[Bucket]) -> np.ndarray:
    """Index into `buckets` for each sample (vectorised): largest resolution it fills, nearest aspect."""
    resolutions = sorted({b.resolution for b in buckets})
    area = widths.astype(np.float64) * heights.astype(np.float64)
    chosen_res = np.full(len(widths), resolutions[0], dtype=np.int64)
    for res in resolutions[1:]:
        chosen_res[area >= float(res) ** 2] = res
    log_aspect = np.log(widths.astype(np.float64) / np.maximum(heights.astype(np.float64), 1.0))
    out = np.empty(len(widths), dtype=np.int64)
    for res in resolutions:
        idx = [i for i, b in enumerate(buckets) if b.resolution == res]
        b_log = np.log(np.array([buckets[i].aspect for i in idx]))
        rows = chosen_res == res
        nearest = np.abs(log_aspect[rows, None] - b_log[None, :]).argmin(axis=1)
        out[rows] = np.array(idx)[nearest]
    return out


def fit_to_bucket(rgb: np.ndarray, bucket: Bucket) -> np.ndarray:
    """Resize an HxWx3 uint8 image to cover the bucket, then centre-crop to it exactly."""
    h, w = rgb.shape[:2]
    scale = max(bucket.width / w, bucket.height / h)
    nw, nh = max(bucket.width, round(w * scale)), max(bucket.height, round(h * scale))
    image = Image.fromarray(rgb)
    if (nw, nh) != (w, h):
        image = image.resize((nw, nh), Image.Resampling.BICUBIC)
    left, top = (nw - bucket.width) // 2, (nh - bucket.height) // 2
    return np.asarray(image.crop((left, top, left + bucket.width, top + bucket.height)), dtype=np.uint8)
