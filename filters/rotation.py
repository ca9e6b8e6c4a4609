"""Rotation filter: EXIF orientation, plus a content-based detector of sideways or upside-down images.

Qwen-Image's stage-1 "Rotation filter" drops images whose content is not upright. The EXIF tag alone
is not enough (it is often stripped, and the decoder already applies it), so the scorer also
estimates the content rotation from pixels with a small learned model:

1. The decoded view is area-averaged once to a square 48x48 grid of luma and blueness. A square grid
   makes `np.rot90` exact, so the four candidate rotations cost four passes over a tiny grid.
2. For each candidate rotation, the feature is the top-to-bottom profile (8 bands) of *sky-ness*:
   blue-ish and smooth. Of the many hand-crafted cues tried (brightness, colour and texture layout,
   signed edge-orientation histograms, anisotropy), this was the only one that generalised across
   held-out photos; everything else lowered leave-one-photo-out accuracy (docs/rotation.md).
3. A linear score shared by the four candidates (a conditional logit trained by
   `bench/train_rotation.py`, shipped as JSON) rates how upright each candidate looks; the softmax
   over the four scores gives the probability of each rotation, with the four rotations equally
   likely a priori. An image without any sky cue gets 0.25 for every rotation and a prediction of 0.

So the detector catches sideways and upside-down *outdoor scenes with sky*; on indoor scenes,
close-ups, objects and text it abstains (probabilities near 0.25). Weights are JSON (never pickle)
and the runtime is numpy plus Pillow's resize.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.base import CpuScorer, SampleBatch, ScorerUnavailable
from filters.config import ScoringConfig
from flywheel.schema import Column

FEATURE_VERSION = 2
GRID = 48  # side of the square working grid
BANDS = 8  # horizontal bands of the vertical sky profile
SKY_BLUE_OFFSET = 0.02  # blueness B - (R+G)/2 (in [0, 1] units) above -0.02 counts towards sky
ANGLES = (0, 90, 180, 270)
DEFAULT_WEIGHTS = Path(__file__).parent / "data" / "rotation_weights.json"
_EPS = 1e-6


def base_maps(rgb: np.ndarray) -> np.ndarray:
    """GRID x GRID x 2 maps (luma, blueness) in [0, 1] units of the whole view, aspect ratio dropped.

    Pillow's BOX filter (an exact area average) does the heavy reduction in C; the 2x oversampled
    grid is averaged again in float so that dark images keep sub-level precision.
    """
    small = Image.fromarray(np.ascontiguousarray(rgb)).resize((2 * GRID, 2 * GRID), Image.Resampling.BOX)
    arr = np.asarray(small, dtype=np.float64).reshape(GRID, 2, GRID, 2, 3).mean(axis=(1, 3)) / 255.0
    r, g, b = arr[..., 0], arr[..., 1], arr[..., 2]
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    blue = b - 0.5 * (r + g)
    return np.stack([luma, blue], axis=-1)


def sky_map(maps: np.ndarray) -> np.ndarray:
    """Sky-ness per grid cell: blue-ish times smooth (little luma gradient relative to the image's own).

    Smoothness is relative to the image's mean gradient so that it does not depend on contrast or
    exposure; blueness is absolute because sky is blue in absolute terms.
    """
    luma, blue = maps[..., 0], maps[..., 1]
    norm = (luma - luma.mean()) / (luma.std() + 0.02)
    energy = np.zeros_like(norm)
    energy[:, 1:-1] += 0.5 * np.abs(norm[:, 2:] - norm[:, :-2])
    energy[1:-1, :] += 0.5 * np.abs(norm[2:, :] - norm[:-2, :])
    smooth = np.exp(-energy / (energy.mean() + _EPS))
    return np.maximum(blue + SKY_BLUE_OFFSET, 0.0) * smooth


def candidate_features(maps: np.ndarray) -> np.ndarray:
    """Features of the four candidate rotations, (4, BANDS): row k describes `np.rot90(maps, k)`.

    Row k is the sky profile (mean per horizontal band, top to bottom) of the map rotated
    counter-clockwise k times, i.e. of the candidate "the content was rotated clockwise by 90k".
    Band profiles are mirror-symmetric, so left-right flips (which keep an image upright) never
    change the score.
    """
    sky = sky_map(maps)
    rows = sky.shape[0] // BANDS
    profiles = [np.rot90(sky, k).reshape(BANDS, rows, sky.shape[1]).mean(axis=(1, 2)) for k in range(4)]
    return np.stack(profiles)


def n_features() -> int:
    return int(candidate_features(np.zeros((GRID, GRID, 2))).shape[1])


def softmax(scores: np.ndarray) -> np.ndarray:
    z = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


@dataclass(frozen=True)
class RotationModel:
    """A linear uprightness score shared by the four candidate rotations (softmax over them)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    meta: dict[str, Any]

    @classmethod
    def load(cls, path: str | Path) -> RotationModel:
        path = Path(path)
        if not path.is_file():
            raise ScorerUnavailable(
                f"rotation weights {path} not found: set rotation.weights or retrain with bench/train_rotation.py"
            )
        raw = json.loads(path.read_text())
        if raw.get("feature_version") != FEATURE_VERSION:
            raise ScorerUnavailable(
                f"rotation weights {path} have feature_version {raw.get('feature_version')}, this code computes "
                f"version {FEATURE_VERSION}: retrain with bench/train_rotation.py or set rotation.weights"
            )
        mean, scale, weights = (np.asarray(raw[k], dtype=np.float64) for k in ("mean", "scale", "weights"))
        expected = n_features()
        if not mean.shape == scale.shape == weights.shape == (expected,):
            raise ScorerUnavailable(f"rotation weights {path} do not have {expected} features per candidate")
        meta = {k: v for k, v in raw.items() if k not in ("mean", "scale", "weights")}
        return cls(mean=mean, scale=scale, weights=weights, meta=meta)

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Uprightness scores of candidate feature rows (..., 4, n_features) -> (..., 4)."""
        return ((features - self.mean) / self.scale) @ self.weights

    def probabilities(self, rgb: np.ndarray) -> np.ndarray:
        """P(content is rotated clockwise by 0, 90, 180, 270 degrees) for an HxWx3 uint8 view."""
        return softmax(self.scores(candidate_features(base_maps(rgb))))


@lru_cache(maxsize=4)
def load_model(path: str | None = None) -> RotationModel:
    """The model at `path` (the shipped weights when None), loaded once per process."""
    return RotationModel.load(path or DEFAULT_WEIGHTS)


class RotationScorer(CpuScorer):
    """Content-based rotation estimate of the (EXIF-transposed) view, plus the EXIF tag itself."""

    name = "rotation"
    config_section = "rotation"
    view_short_side = 128  # a 48x48 grid is all the features use
    # rotation_pred comes first: the null counter reads the first column, and only broken samples
    # have a null prediction (most healthy images have no EXIF orientation).
    columns = (
        Column(
            "rotation_pred",
            pa.int16(),
            "degrees",
            "Content-based estimate of the clockwise rotation applied "
            "to an upright image to get the displayed one: 0, 90, 180 or 270 (0 when there is no cue).",
            owner="rotation",
        ),
        Column(
            "rotation_confidence",
            pa.float32(),
            "probability",
            "Detector probability of rotation_pred (0.25 means no evidence).",
            owner="rotation",
        ),
        Column(
            "rotation_upright_prob",
            pa.float32(),
            "probability",
            "Detector probability that the image as "
            "displayed (after EXIF) is upright, with the four rotations equally likely a priori.",
            owner="rotation",
        ),
        Column(
            "rotation_exif",
            pa.int8(),
            "",
            "EXIF orientation tag (1..8) of the stored image; null if absent. "
            "Values other than 1 mean the stored pixels need the EXIF transform to display upright.",
            owner="rotation",
        ),
    )

    def __init__(self, weights: str | Path | None = None) -> None:
        super().__init__()
        self.model = load_model(str(weights) if weights else None)

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> RotationScorer:
        return cls(cfg.rotation.weights)

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        out: dict[str, list[Any]] = {c.name: [] for c in self.columns}
        for d in batch.decoded:
            if not d.ok:
                for values in out.values():
                    values.append(None)
                continue
            probs = self.model.probabilities(d.rgb_at(self.view_short_side))
            best = int(np.argmax(probs))  # ties (no cue) resolve to 0: most images are upright
            out["rotation_pred"].append(ANGLES[best])
            out["rotation_confidence"].append(float(probs[best]))
            out["rotation_upright_prob"].append(float(probs[0]))
            out["rotation_exif"].append(d.exif_orientation)
        return out
