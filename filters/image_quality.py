"""Technical image quality: BRISQUE, sharpness at a normalised scale, and a noise estimate.

Sharpness runs on the luma of the shared decoded view, resized so the shorter side is exactly `SCALE` px
(smaller images are used as they are), so a 4K photo and its 512 px copy compare: at native resolution it
would mostly measure the resolution. BRISQUE and noise run on a central `CROP` x `CROP` crop of the luma at
native resolution, decoded here from the bytes: JPEG blocks and sensor noise live at the stored pixel scale
and a downscaled view averages them away (measured: BRISQUE on the 256 px view did not rise with JPEG
damage on every photo; on the native crop it did).

- `iq_brisque`: BRISQUE (Mittal et al. 2012) with the SVR model the `brisque` package ships (offline; no
  download; its own `BRISQUE.score` fails under current numpy, so its feature functions are called here).
  Lower is better, about 0-100. The package keeps its feature scaling in a pickle; it is read here
  with an unpickler that refuses every global, so only plain lists and floats can come out of it.
- `iq_sharpness`: variance of the 3x3 Laplacian of the luma (0-255) at `SCALE`. Blur lowers it; noise
  raises it, so read it together with `iq_noise`.
- `iq_noise`: Gaussian noise sigma (grey levels) by Immerkaer's fast estimator (1996, a 3x3 mask that
  cancels image structure up to second order), at `SCALE`. Texture-rich photos read a few grey levels
  even when clean.
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image
from scipy import ndimage

from filters.base import CpuScorer, SampleBatch
from flywheel.schema import Column

SCALE = 256
CROP = 256
_LAPLACIAN = np.array([[0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=np.float32)
_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float32)


class _NoGlobals(pickle.Unpickler):
    """Unpickler for data-only pickles: any class or function reference is refused."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"refusing global {module}.{name} in a data-only pickle")


@cache
def _brisque() -> Any:
    """The brisque package's scorer with its shipped SVR model and safely read feature scaling."""
    import brisque
    from brisque.brisque import BRISQUE
    from brisque.models import MODEL_PATH
    from libsvm import svmutil

    obj = BRISQUE.__new__(BRISQUE)  # its __init__ would pickle.load; do the two loads here instead
    obj.url = False
    obj.model = svmutil.svm_load_model(str(Path(MODEL_PATH) / "svm.txt"))
    with open(Path(MODEL_PATH) / "normalize.pickle", "rb") as f:
        obj.scale_params = _NoGlobals(io.BytesIO(f.read())).load()
    del brisque
    return obj


def at_scale(rgb: np.ndarray, short_side: int = SCALE) -> np.ndarray:
    """Luma (float32, 0-255) of `rgb` resized so its shorter side is `short_side` (never upscaled)."""
    img = Image.fromarray(rgb).convert("L")
    w, h = img.size
    s = min(w, h)
    if s > short_side:
        img = img.resize((max(1, round(w * short_side / s)), max(1, round(h * short_side / s))), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def native_crop(data: bytes, size: int = CROP, max_pixels: int = 64_000_000) -> np.ndarray | None:
    """Central `size` x `size` crop of the full-resolution luma (float32, 0-255); None if too many pixels."""
    with Image.open(io.BytesIO(data)) as img:
        w, h = img.size
        if w * h > max_pixels:
            return None
        if img.format == "JPEG":
            img.draft("L", img.size)  # luma plane only, full scale
        gray = np.asarray(img.convert("L"), dtype=np.float32)
    h, w = gray.shape
    top, left = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return gray[top : top + size, left : left + size]


def sharpness(gray: np.ndarray) -> float:
    return float(ndimage.convolve(gray, _LAPLACIAN, mode="reflect").var())


def noise_sigma(gray: np.ndarray) -> float:
    """Immerkaer's estimator: the mask cancels smooth structure up to second order, leaving the noise."""
    if min(gray.shape) < 3:
        return 0.0
    r = ndimage.convolve(gray, _IMMERKAER, mode="reflect")[1:-1, 1:-1]
    return float(np.sqrt(np.pi / 2) * np.abs(r).mean() / 6.0)


def brisque_score(gray: np.ndarray) -> float | None:
    """BRISQUE of a 0-255 luma plane; None when the model cannot score it (too small, flat)."""
    if min(gray.shape) < 32 or float(gray.std()) < 1e-3:
        return None
    obj = _brisque()
    import cv2

    g = gray.astype(np.float64) / 255.0
    feats = obj.calculate_brisque_features(g, kernel_size=7, sigma=7 / 6)
    half = cv2.resize(g, None, fx=0.5, fy=0.5, interpolation=cv2.INTER_CUBIC)
    feats = np.concatenate((feats, obj.calculate_brisque_features(half, kernel_size=7, sigma=7 / 6)))
    # Some features come back as 1-element arrays, which brisque 0.2.0's own score() cannot float() under
    # current numpy (its score() raises TypeError); flatten them to plain floats first.
    feats = np.array([float(np.asarray(f, dtype=np.float64).reshape(-1)[0]) for f in feats])
    value = float(obj.calculate_image_quality_score(feats))
    return value if np.isfinite(value) else None


class ImageQualityScorer(CpuScorer):
    name = "image_quality"
    view_short_side = SCALE
    default_on = False  # costly (stage 4/5 only): opt in with --filters or score-missing
    columns = (
        Column(
            "iq_brisque",
            pa.float32(),
            "0-100",
            "BRISQUE no-reference quality, central 256 px native crop (lower is better).",
            owner="image_quality",
        ),
        Column(
            "iq_sharpness",
            pa.float32(),
            "grey^2",
            "Variance of the Laplacian of the luma at 256 px short side (low: blurred).",
            owner="image_quality",
        ),
        Column(
            "iq_noise",
            pa.float32(),
            "grey levels",
            "Estimated Gaussian noise sigma (Immerkaer), central 256 px native crop.",
            owner="image_quality",
        ),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        out: dict[str, list[Any]] = {c.name: [] for c in self.columns}
        for data, d in zip(batch.images, batch.decoded, strict=True):
            crop = None
            if d.ok and data:
                try:
                    crop = native_crop(data)
                except Exception:  # the broken filter already reports undecodable files
                    crop = None
            out["iq_sharpness"].append(sharpness(at_scale(d.rgb)) if d.ok else None)
            out["iq_brisque"].append(brisque_score(crop) if crop is not None else None)
            out["iq_noise"].append(noise_sigma(crop) if crop is not None else None)
        return out
