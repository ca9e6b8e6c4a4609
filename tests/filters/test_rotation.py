"""Tests of the rotation filter: EXIF column, broken samples, shipped weights, and content predictions.

The content test uses a synthetic outdoor scene (blue sky gradient over textured ground) rather than
one of the training photos, so it is not leaked from the training set.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from filters.base import SampleBatch, ScorerUnavailable
from filters.rotation import (
    ANGLES,
    DEFAULT_WEIGHTS,
    FEATURE_VERSION,
    RotationModel,
    RotationScorer,
    base_maps,
    candidate_features,
    n_features,
)
from flywheel.imaging import EXIF_ORIENTATION_TAG, decode, encode_jpeg


def synthetic_scene(h: int = 240, w: int = 360, seed: int = 0) -> np.ndarray:
    """An upright outdoor scene: smooth blue sky (lighter at the horizon) over textured green-brown ground."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w, 3), dtype=np.float64)
    horizon = int(h * 0.45)
    t = np.linspace(0.0, 1.0, horizon)[:, None]
    img[:horizon] = np.stack([90 + 90 * t, 140 + 70 * t, 230 + 15 * t], axis=-1)
    ground = h - horizon
    shade = np.linspace(0.8, 1.1, ground)[:, None, None]
    texture = rng.normal(0.0, 28.0, size=(ground, w, 1))
    img[horizon:] = (np.array([95.0, 120.0, 55.0]) + texture) * shade
    return np.clip(img, 0, 255).astype(np.uint8)


def rotate_cw(img: np.ndarray, degrees: int) -> np.ndarray:
    """Rotate clockwise by `degrees` (a multiple of 90): the convention of rotation_pred."""
    return np.ascontiguousarray(np.rot90(img, -(degrees // 90)))


def batch_of(*blobs: bytes | None) -> SampleBatch:
    decoded = [decode(b, view_short_side=RotationScorer.view_short_side) for b in blobs]
    n = len(blobs)
    return SampleBatch(ids=[str(i) for i in range(n)], images=list(blobs), captions=[None] * n, decoded=decoded)


def jpeg_with_orientation(rgb: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[EXIF_ORIENTATION_TAG] = orientation
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=90, exif=exif)
    return buf.getvalue()


@pytest.fixture(scope="module")
def scorer() -> RotationScorer:
    return RotationScorer()


def test_shipped_weights_load_with_declared_features_and_provenance() -> None:
    raw = json.loads(DEFAULT_WEIGHTS.read_text())
    assert raw["feature_version"] == FEATURE_VERSION
    assert raw["n_features"] == n_features() == len(raw["weights"]) == len(raw["mean"]) == len(raw["scale"])
    training = raw["training"]
    assert training["photos"] and training["cv"]["scheme"] == "leave-one-photo-out"
    assert 0.25 < training["cv"]["acc4"] <= 1.0  # better than chance, as measured when it was trained
    model = RotationModel.load(DEFAULT_WEIGHTS)
    assert model.weights.shape == (n_features(),)


def test_wrong_feature_version_is_refused(tmp_path) -> None:
    raw = json.loads(DEFAULT_WEIGHTS.read_text())
    raw["feature_version"] = FEATURE_VERSION + 100
    path = tmp_path / "w.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ScorerUnavailable, match="feature_version"):
        RotationModel.load(path)
    with pytest.raises(ScorerUnavailable, match="not found"):
        RotationModel.load(tmp_path / "missing.json")


def test_candidate_features_follow_rotations_exactly() -> None:
    maps = base_maps(synthetic_scene(240, 240))
    feats = candidate_features(maps)
    for k in range(4):
        rotated = candidate_features(np.rot90(maps, k))
        assert np.allclose(rotated, np.roll(feats, -k, axis=0))


@pytest.mark.parametrize("degrees", ANGLES)
def test_rotated_scene_is_detected(scorer: RotationScorer, degrees: int) -> None:
    shown = rotate_cw(synthetic_scene(), degrees)
    out = scorer(batch_of(encode_jpeg(shown)))
    assert out["rotation_pred"] == [degrees]
    assert out["rotation_confidence"][0] > 0.5
    upright = out["rotation_upright_prob"][0]
    assert (upright > 0.5) if degrees == 0 else (upright < 0.2)
    assert out["rotation_exif"] == [None]


def test_probabilities_sum_to_one(scorer: RotationScorer) -> None:
    rng = np.random.default_rng(3)
    for img in (synthetic_scene(seed=1), rng.integers(0, 256, size=(200, 300, 3), dtype=np.uint8)):
        probs = scorer.model.probabilities(decode(encode_jpeg(img)).rgb)
        assert probs.shape == (4,)
        assert probs.sum() == pytest.approx(1.0, abs=1e-9)
        assert (probs >= 0).all()


def test_image_without_cue_abstains(scorer: RotationScorer) -> None:
    """A flat warm image has no sky: every rotation gets 0.25 and the prediction defaults to upright."""
    flat = np.full((200, 300, 3), (200, 120, 60), dtype=np.uint8)
    out = scorer(batch_of(encode_jpeg(flat)))
    assert out["rotation_pred"] == [0]
    assert out["rotation_upright_prob"][0] == pytest.approx(0.25, abs=1e-6)


def test_exif_orientation_is_reported_and_applied(scorer: RotationScorer) -> None:
    """Orientation 6 says 'rotate 90 degrees clockwise to display': pixels stored that way display upright."""
    stored = np.ascontiguousarray(np.rot90(synthetic_scene(), 1))  # upright rotated counter-clockwise
    out = scorer(
        batch_of(
            jpeg_with_orientation(stored, 6),
            jpeg_with_orientation(synthetic_scene(), 1),
            encode_jpeg(synthetic_scene()),
        )
    )
    assert out["rotation_exif"] == [6, 1, None]
    assert out["rotation_pred"] == [0, 0, 0]


def test_broken_samples_get_nulls(scorer: RotationScorer) -> None:
    good = encode_jpeg(synthetic_scene())
    out = scorer(batch_of(b"not an image", None, good[: len(good) // 3], good))
    for name in scorer.column_names():
        assert out[name][:3] == [None, None, None], name
        assert out[name][3] is not None or name == "rotation_exif"
    arrays = scorer.to_arrays(out)  # declared Arrow types accept the values
    assert arrays["rotation_pred"].null_count == 3
    assert scorer.counters.nulls == 3
