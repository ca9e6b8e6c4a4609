"""ClipScorer on a tiny random-weight open_clip model written to disk (no network, no real weights)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from filters.base import ScorerUnavailable
from filters.clip_score import ClipScorer, clip_view
from filters.clip_tiny import TINY_MODEL_NAME, build_tiny_clip
from filters.config import ClipConfig, ScoringConfig
from flywheel.imaging import decode, encode_jpeg


def _decoded(h: int, w: int, seed: int):
    rng = np.random.default_rng(seed)
    d = decode(encode_jpeg(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8), quality=90))
    assert d.ok
    return d


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[Path, Path]:
    return build_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="module")
def scorer(tiny) -> ClipScorer:
    config_path, ckpt = tiny
    cfg = ScoringConfig(
        clip=ClipConfig(model=TINY_MODEL_NAME, checkpoint=str(ckpt), model_config=str(config_path), device="cpu")
    )
    s = ClipScorer.from_config(cfg)
    assert s.available() is None
    s.load()
    return s


def test_tiny_build_writes_config_and_safetensors(tiny) -> None:
    config_path, ckpt = tiny
    assert config_path.name == f"{TINY_MODEL_NAME}.json" and ckpt.suffix == ".safetensors"
    assert ckpt.stat().st_size > 1_000_000


def test_checkpoint_weights_are_the_ones_loaded(scorer: ClipScorer, tiny) -> None:
    from safetensors.torch import load_file

    saved = load_file(str(tiny[1]))
    live = scorer._model.state_dict()
    for key in ("visual.conv1.weight", "text_projection", "token_embedding.weight"):
        np.testing.assert_array_equal(live[key].cpu().numpy(), saved[key].numpy())


def test_prepare_uses_model_image_size_and_matches_open_clip(scorer: ClipScorer) -> None:
    import open_clip
    import torch

    assert scorer.input_shape == (64, 64, 3) and scorer.view_short_side == 64
    reference = open_clip.image_transform(64, is_train=False)
    for i, (h, w) in enumerate([(100, 300), (300, 100), (8, 8), (64, 64), (256, 256), (3, 200), (65, 64)]):
        d = _decoded(h, w, i)
        arr = scorer.prepare(d)
        assert arr.shape == (64, 64, 3) and arr.dtype == np.uint8
        ours = torch.from_numpy(arr.copy()).permute(2, 0, 1).float() / 255.0
        ours = (ours - scorer._mean[0].cpu()) / scorer._std[0].cpu()
        ref = reference(Image.fromarray(d.rgb))
        assert torch.allclose(ours, ref, atol=1e-5), (h, w)


def test_scores_finite_bounded_and_null_without_caption(scorer: ClipScorer) -> None:
    inputs = np.stack([scorer.prepare(_decoded(120, 160, s)) for s in range(6)])
    captions = ["a photo of a cat", None, "", "   ", "a red car parked on a street", "a photo of a cat"]
    out = scorer(inputs, captions)["clip_score"]
    assert out[1] is None and out[2] is None and out[3] is None
    for v in (out[0], out[4], out[5]):
        assert isinstance(v, float) and math.isfinite(v) and -1.0 <= v <= 1.0
    assert scorer.counters.nulls >= 3


def test_identical_inputs_identical_scores_and_text_matters(scorer: ClipScorer) -> None:
    row = scorer.prepare(_decoded(200, 150, 7))
    inputs = np.stack([row, row, row])
    out = scorer.score(inputs, ["a dog on the grass", "a dog on the grass", "an aerial view of a city at night"])
    scores = out["clip_score"]
    assert scores[0] == pytest.approx(scores[1], abs=1e-6)
    assert abs(scores[0] - scores[2]) > 1e-4  # the caption is actually encoded


def test_chunking_does_not_change_scores(tiny, scorer: ClipScorer) -> None:
    config_path, ckpt = tiny
    small = ClipScorer(model_config=str(config_path), checkpoint=str(ckpt), device="cpu", batch_size=2)
    small.load()
    inputs = np.stack([scorer.prepare(_decoded(90, 90, s)) for s in range(5)])
    captions = [f"picture number {i} of a landscape" for i in range(5)]
    np.testing.assert_allclose(
        small.score(inputs, captions)["clip_score"], scorer.score(inputs, captions)["clip_score"], atol=1e-5
    )


def test_loaded_scorer_pickles_without_weights(scorer: ClipScorer) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(scorer))
    assert clone._model is None and clone.input_shape == scorer.input_shape
    inputs = np.stack([scorer.prepare(_decoded(80, 120, 3))])
    assert clone.score(inputs, ["a cat"])["clip_score"] == pytest.approx(
        scorer.score(inputs, ["a cat"])["clip_score"], abs=1e-6
    )


def test_without_checkpoint_names_the_config_key() -> None:
    s = ClipScorer.from_config(ScoringConfig())
    message = s.available()
    assert message is not None and "clip.checkpoint" in message and "FLYWHEEL_CLIP_CHECKPOINT" in message
    with pytest.raises(ScorerUnavailable, match=r"clip\.checkpoint"):
        s.load()


def test_missing_checkpoint_file_is_unavailable(tmp_path) -> None:
    s = ClipScorer(checkpoint=str(tmp_path / "missing.safetensors"))
    assert "clip.checkpoint" in (s.available() or "")
    with pytest.raises(ScorerUnavailable):
        s.load()


def test_hub_model_names_are_refused(tmp_path) -> None:
    ckpt = tmp_path / "w.safetensors"
    ckpt.write_bytes(b"")
    s = ClipScorer(model="hf-hub:laion/CLIP-ViT-B-32-laion2B-s34B-b79K", checkpoint=str(ckpt))
    assert "clip.model" in (s.available() or "")


def test_builtin_image_size_read_without_weights() -> None:
    assert ClipScorer(model="ViT-B-32").input_shape == (224, 224, 3)
    assert ClipScorer(model="ViT-L-14-336").input_shape == (336, 336, 3)


def test_clip_view_center_crop_geometry() -> None:
    arr = np.zeros((100, 300, 3), np.uint8)
    arr[:, 140:160] = 255  # a bright vertical bar in the middle survives the center crop
    out = clip_view(arr, 50)
    assert out.shape == (50, 50, 3)
    assert out[:, 25].mean() > 200 and out[:, 0].mean() < 10
