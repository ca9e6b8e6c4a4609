"""Constructed preferences: an image is preferred over its own degraded version.

Why these pairs: no aesthetic ratings can be downloaded here, but "this photo is better than the same photo
blurred / noisy / blocky / washed out / over-saturated / cut through its subject / tilted" needs no
annotator. The pairs teach a head what technical damage looks like in the embedding; they say nothing about
taste between two different good photos (docs/aesthetics.md says so with figures).

Every view (clean or degraded) goes through the same JPEG q=90 round trip at the end, so compression alone
is a tell only for the `jpeg` degradation. Severities are drawn per view from ranges strong enough to be
visible at the 224 px view the embedding sees.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

VIEW_SHORT_SIDE = 256  # working size of views; the embedding centre-crops 224 px from it


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as out:
        return out.convert("RGB")


def blur(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(2.0, 5.0))))


def noise(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    arr = np.asarray(img, dtype=np.float32)
    sigma = float(rng.uniform(18.0, 45.0))
    out = arr + rng.normal(0.0, sigma, size=arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(out, 0, 255).astype(np.uint8))


def jpeg(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return _jpeg(img, int(rng.integers(3, 13)))


def washed_out(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Low contrast pulled toward a light grey, as in a hazy or over-exposed, flat print."""
    arr = np.asarray(img, dtype=np.float32)
    keep = float(rng.uniform(0.25, 0.5))
    grey = float(rng.uniform(150.0, 215.0))
    return Image.fromarray(np.clip(arr * keep + grey * (1 - keep), 0, 255).astype(np.uint8))


def oversaturated(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    return ImageEnhance.Color(img).enhance(float(rng.uniform(2.8, 5.0)))


def bad_crop(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A narrow strip at one edge (18-35% of the side), so the view cuts through or misses the subject."""
    w, h = img.size
    frac = float(rng.uniform(0.18, 0.35))
    side = int(rng.integers(4))
    if side == 0:
        box = (0, 0, max(1, round(w * frac)), h)
    elif side == 1:
        box = (w - max(1, round(w * frac)), 0, w, h)
    elif side == 2:
        box = (0, 0, w, max(1, round(h * frac)))
    else:
        box = (0, h - max(1, round(h * frac)), w, h)
    return _resize_short(img.crop(box), min(w, h))


def tilt(img: Image.Image, rng: np.random.Generator) -> Image.Image:
    """Rotated 6-15 degrees and cropped to the largest upright rectangle inside (no black corners)."""
    w, h = img.size
    deg = float(rng.uniform(6.0, 15.0)) * (1 if rng.random() < 0.5 else -1)
    rot = img.rotate(deg, resample=Image.Resampling.BICUBIC, expand=False)
    a = np.deg2rad(abs(deg))
    # Largest axis-aligned rectangle of the same aspect inside a w x h rectangle rotated by a.
    k = min(w, h) / (w * np.sin(a) + h * np.cos(a)) if w >= h else min(w, h) / (h * np.sin(a) + w * np.cos(a))
    k = min(1.0, float(k))
    cw, ch = max(1, int(w * k)), max(1, int(h * k))
    left, top = (w - cw) // 2, (h - ch) // 2
    return _resize_short(rot.crop((left, top, left + cw, top + ch)), min(w, h))


DEGRADATIONS: dict[str, Callable[[Image.Image, np.random.Generator], Image.Image]] = {
    "blur": blur,
    "noise": noise,
    "jpeg": jpeg,
    "washed_out": washed_out,
    "oversaturated": oversaturated,
    "bad_crop": bad_crop,
    "tilt": tilt,
}


def _resize_short(img: Image.Image, short: int) -> Image.Image:
    scale = short / min(img.size)
    size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
    return img.resize(size, Image.Resampling.BICUBIC) if size != img.size else img


def clean_views(rgb: np.ndarray, n: int, rng: np.random.Generator) -> list[Image.Image]:
    """`n` well-framed views of a photo: the whole photo, then central crops of 70-100% of each side."""
    img = Image.fromarray(np.ascontiguousarray(rgb[..., :3], dtype=np.uint8)).convert("RGB")
    w, h = img.size
    views = []
    for i in range(n):
        f = 1.0 if i == 0 else float(rng.uniform(0.7, 1.0))
        cw, ch = max(8, round(w * f)), max(8, round(h * f))
        left = int(rng.integers(0, w - cw + 1)) if cw < w else 0
        top = int(rng.integers(0, h - ch + 1)) if ch < h else 0
        views.append(_resize_short(img.crop((left, top, left + cw, top + ch)), VIEW_SHORT_SIDE))
    return views


def finish(img: Image.Image) -> np.ndarray:
    """The common last step of every view: a JPEG q=90 round trip, as a decoded pool image would be."""
    return np.asarray(_jpeg(img, 90), dtype=np.uint8)


@dataclass
class PairSet:
    """Views and pairs built from source photos: `views[good[i]]` is preferred over `views[bad[i]]`."""

    views: list[np.ndarray]
    source: list[str]  # source photo (group) of each view
    good: np.ndarray
    bad: np.ndarray
    kind: list[str]  # degradation of each pair


def build_pairs(
    photos: list[tuple[str, np.ndarray]],
    views_per_photo: int = 4,
    seed: int = 0,
    kinds: tuple[str, ...] = tuple(DEGRADATIONS),
) -> PairSet:
    """For every (group, rgb) photo: clean views, and each degradation of each view as a (clean, degraded) pair.

    Randomness is derived from `seed` and the group name, so a photo's views do not change when other photos
    are added or removed (held-out figures stay comparable across data sets).
    """
    views: list[np.ndarray] = []
    source: list[str] = []
    good: list[int] = []
    bad: list[int] = []
    kind: list[str] = []
    for group, rgb in photos:
        rng = np.random.default_rng([seed, zlib.crc32(group.encode())])
        for clean in clean_views(rgb, views_per_photo, rng):
            ci = len(views)
            views.append(finish(clean))
            source.append(group)
            for name in kinds:
                views.append(finish(DEGRADATIONS[name](clean, rng)))
                source.append(group)
                good.append(ci)
                bad.append(len(views) - 1)
                kind.append(name)
    return PairSet(views, source, np.asarray(good, dtype=np.int64), np.asarray(bad, dtype=np.int64), kind)
