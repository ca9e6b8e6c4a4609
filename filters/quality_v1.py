"""The Qwen-Image v1 stage-2 quality filters: clarity (blur), luma, saturation and texture, as columns.

All four are computed on the shared decoded view resized to a 256 px shorter side (the scale of
`filters.image_quality`), so they do not depend on the stored resolution. Thresholds live in the recipes;
they were tuned on one labeled set and reported on another built from different photos
(bench/quality_v1.py, docs/filter_quality.md).

- `v1_blur`: the Crete-Roffet no-reference blur metric (2007): blur the image again with a 9-px box and
  measure how much of the neighbour variation that removes; a sharp image loses much (value near 0), an
  already blurred one little (value near 1). It is relative to the image's own variation, so flat but sharp
  content does not read as blurred the way a Laplacian-variance threshold does.
- `v1_luma_mean`, `v1_luma_p01`, `v1_luma_p99`: mean and 1st/99th luma percentiles 0-255. An underexposed
  photo has no highlights (low p99) and an overexposed one no shadows (high p01); a night sky with stars or
  a white page with black text keeps them, which the mean alone cannot tell apart (measured: the mean's
  tuned threshold lost precision on the report photos' dark space image).
- `v1_saturation_p95`: 95th percentile of HSV saturation 0-1 over lit pixels (value >= 32; darker pixels
  have no reliable colour). Washed-out images have no strongly coloured pixel at all. Exactly grey images
  (all channels equal) measure 0, but a grey photo with a little per-channel noise does not (measured: up to
  0.12 with noise sigma 3), so "= 0" is no monochrome test.
- `v1_saturation_p95_64px`: the same percentile on a 4x box-reduced (64 px) view. Averaging 4x4 pixels removes
  per-pixel colour noise (the same noisy grey photos read at most 0.04), while a desaturated colour photo keeps
  its weak but coherent colour: the recipes' monochrome guard. Monochrome is a choice, so an image under the
  guard is kept; under-saturation is rejected only above it.
- `v1_saturation_clipped`: fraction of lit pixels at saturation >= 0.95 (a channel pushed to 0). Kept for
  inspection; it misses boosted muted photos (few pixels reach the gamut edge), so no rule uses it now.
- `v1_chroma_detail`: chroma detail over luma detail (mean absolute neighbour difference of the R-Y and B-Y
  planes over that of the luma). Changing colour by k (ImageEnhance.Color, a camera's saturation setting)
  multiplies the chroma detail by k while the luma detail stays, whatever the photo's own colourfulness:
  measured 0.4-1.5 on the clean photos, below 0.4 for desaturated copies, above 1.3 for boosted ones. It
  judges colour relative to the image's own structure, so a dark or muted photo is not washed out just
  because its saturation is low (the under-saturation rule).
- `v1_oversaturation`: `v1_chroma_detail` times `v1_saturation_p95`. The saturation factor keeps grainy but
  muted photos (chroma noise, little colour: chroma detail up to 1.5) from reading over-saturated.
- `v1_texture`: Immerkaer noise sigma of the luma (grey levels): high for static, noise-like and
  over-textured images, a few levels for photos, including grass and gravel.
- `v1_noise_like`: `v1_texture` times its whiteness squared, whiteness being `v1_texture` over the same
  sigma of the 2x box-reduced luma. Pixel noise is uncorrelated, so the residual left at full scale is about
  as large as at half scale (measured 0.85-2.0); natural texture (grass, brick, gravel) is correlated and
  leaves less at full scale (0.3-0.9). Squared, the whiteness separates a noisy photo whose noise the 256 px
  view has already averaged down (sigma 5-7, as high as grass) from a textured but clean one.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from scipy import ndimage

from filters.base import CpuScorer, SampleBatch
from filters.image_quality import SCALE, noise_sigma
from flywheel.schema import Column


def resized_rgb(rgb: np.ndarray, short_side: int = SCALE) -> np.ndarray:
    h, w = rgb.shape[:2]
    s = min(h, w)
    if s <= short_side:
        return rgb
    img = Image.fromarray(rgb).resize((max(1, round(w * short_side / s)), max(1, round(h * short_side / s))))
    return np.asarray(img)


def crete_blur(gray: np.ndarray) -> float:
    """Crete-Roffet blur in [0, 1]: 0 sharp, 1 fully blurred (flat images read 1)."""
    f = gray.astype(np.float32)
    out = 0.0
    for axis in (0, 1):
        b = ndimage.uniform_filter1d(f, 9, axis=axis, mode="reflect")
        df = np.abs(np.diff(f, axis=axis))
        db = np.abs(np.diff(b, axis=axis))
        s_f = float(df.sum())
        if s_f <= 0:
            return 1.0
        s_v = float(np.maximum(0.0, df - db).sum())
        out = max(out, (s_f - s_v) / s_f)
    return out


def lit_saturation(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of the pixels with value >= 32 (darker pixels have no reliable colour), flattened."""
    x = rgb.astype(np.float32)
    mx, mn = x.max(axis=-1), x.min(axis=-1)
    lit = mx >= 32
    return (mx[lit] - mn[lit]) / mx[lit]


def chroma_detail(rgb: np.ndarray) -> float:
    """Mean neighbour difference of the R-Y and B-Y planes over that of the luma Y (luma floored at 1 level).

    The floor keeps near-flat images (no luma detail to compare with) from dividing by ~0.
    """
    x = rgb.astype(np.float32)
    y = x @ np.array([0.299, 0.587, 0.114], np.float32)
    planes = (y, x[..., 0] - y, x[..., 2] - y)
    detail = [float(np.abs(np.diff(p, axis=0)).mean() + np.abs(np.diff(p, axis=1)).mean()) for p in planes]
    return (detail[1] + detail[2]) / max(detail[0], 1.0)


def noise_like(gray: np.ndarray, texture: float) -> float:
    """`texture` (Immerkaer sigma of `gray`) times its whiteness squared (0 for images under 6 px a side)."""
    h, w = (gray.shape[0] // 2) * 2, (gray.shape[1] // 2) * 2
    if min(h, w) < 6:
        return 0.0
    half = gray[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    whiteness = texture / max(noise_sigma(half), 1e-3)
    return texture * whiteness * whiteness


def saturation(rgb: np.ndarray) -> tuple[float, float]:
    """95th percentile of HSV saturation and fraction >= 0.95, over lit pixels (0, 0 when none is lit)."""
    sat = lit_saturation(rgb)
    if sat.size == 0:
        return 0.0, 0.0
    return float(np.percentile(sat, 95)), float((sat >= 0.95).mean())


class QualityV1Scorer(CpuScorer):
    name = "quality_v1"
    view_short_side = SCALE
    default_on = False  # costly (stage 4/5 only): opt in with --filters or score-missing
    columns = (
        Column("v1_blur", pa.float32(), "0-1", "Crete-Roffet blur at 256 px (0 sharp, 1 blurred).", owner="quality_v1"),
        Column("v1_luma_mean", pa.float32(), "0-255", "Mean luma.", owner="quality_v1"),
        Column("v1_luma_p01", pa.float32(), "0-255", "1st luma percentile (high: too bright).", owner="quality_v1"),
        Column("v1_luma_p99", pa.float32(), "0-255", "99th luma percentile (low: too dark).", owner="quality_v1"),
        Column(
            "v1_saturation_p95",
            pa.float32(),
            "0-1",
            "95th percentile of HSV saturation of lit pixels (low: washed out); 0 for exactly grey images.",
            owner="quality_v1",
        ),
        Column(
            "v1_saturation_clipped",
            pa.float32(),
            "fraction",
            "Fraction of lit pixels at saturation >= 0.95 (high: over-saturated).",
            owner="quality_v1",
        ),
        Column(
            "v1_saturation_p95_64px",
            pa.float32(),
            "0-1",
            "95th percentile of HSV saturation of lit pixels on a 4x box-reduced view (near 0: monochrome).",
            owner="quality_v1",
        ),
        Column(
            "v1_chroma_detail",
            pa.float32(),
            "ratio",
            "Chroma (R-Y, B-Y) detail over luma detail (low: washed out, high: boosted colour).",
            owner="quality_v1",
        ),
        Column(
            "v1_oversaturation",
            pa.float32(),
            "ratio",
            "v1_chroma_detail times v1_saturation_p95 (high: colour boosted).",
            owner="quality_v1",
        ),
        Column(
            "v1_texture",
            pa.float32(),
            "grey levels",
            "Immerkaer noise sigma at 256 px: high for noise-like, over-textured images.",
            owner="quality_v1",
        ),
        Column(
            "v1_noise_like",
            pa.float32(),
            "grey levels",
            "v1_texture times (v1_texture / the same sigma at 128 px) squared: high for uncorrelated noise.",
            owner="quality_v1",
        ),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        out: dict[str, list[Any]] = {c.name: [] for c in self.columns}
        for d in batch.decoded:
            if not d.ok:
                for values in out.values():
                    values.append(None)
                continue
            rgb = resized_rgb(d.rgb)
            gray = np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.float32)
            out["v1_blur"].append(crete_blur(gray))
            p01, p99 = np.percentile(gray, [1, 99])
            sat_p95, clipped = saturation(rgb)
            out["v1_luma_mean"].append(float(gray.mean()))
            out["v1_luma_p01"].append(float(p01))
            out["v1_luma_p99"].append(float(p99))
            out["v1_saturation_p95"].append(sat_p95)
            out["v1_saturation_clipped"].append(clipped)
            small = np.asarray(Image.fromarray(rgb).reduce(4)) if min(rgb.shape[:2]) >= 8 else rgb
            out["v1_saturation_p95_64px"].append(saturation(small)[0])
            detail = chroma_detail(rgb)
            out["v1_chroma_detail"].append(detail)
            out["v1_oversaturation"].append(detail * sat_p95)
            texture = noise_sigma(gray)
            out["v1_texture"].append(texture)
            out["v1_noise_like"].append(noise_like(gray, texture))
        return out
