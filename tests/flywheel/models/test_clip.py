"""open_clip loading in the core: the index's CLIP space loads local weights without importing a filter."""

from __future__ import annotations

import numpy as np
import pytest

from filters.clip_tiny import build_tiny_clip
from flywheel.errors import MissingInput
from flywheel.models.clip import ClipConfigError, load_clip
from flywheel.models.embedders import ClipEmbedder
from tests.images import encode, photo_like


def test_clip_embedder_puts_texts_and_images_in_one_unit_norm_space(tmp_path) -> None:
    config, checkpoint = build_tiny_clip(tmp_path / "clip")
    embedder = ClipEmbedder(config.stem, str(checkpoint), str(config))
    texts = embedder.embed_texts(["a red square", "a cat"])
    images, ok = embedder.embed_images([encode(photo_like(80, 60, seed=1)), None, b"not an image"])
    assert texts.shape == (2, embedder.space.dim) and images.shape == (3, embedder.space.dim)
    assert ok.tolist() == [True, False, False] and not images[~ok].any()
    assert np.allclose(np.linalg.norm(texts, axis=1), 1.0, atol=1e-5)
    assert np.isclose(np.linalg.norm(images[0]), 1.0, atol=1e-5)
    loaded = load_clip(config.stem, str(checkpoint), str(config))
    assert embedder.space.text_queries and embedder.space.dim == loaded.embed_dim


def test_missing_or_wrong_clip_files_are_one_line_user_errors(tmp_path) -> None:
    with pytest.raises(MissingInput, match="index clip_checkpoint"):
        ClipEmbedder("ViT-B-32", str(tmp_path / "missing.safetensors"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"not": "a clip config"}')
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"x")
    with pytest.raises(ClipConfigError, match=r"clip\.model_config"):
        load_clip("bad", str(weights), str(bad))
    with pytest.raises(ClipConfigError, match="hub"):
        load_clip("hf-hub:org/model", str(weights))
