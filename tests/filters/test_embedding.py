"""The shared image embedding: the filter's pass equals the training embedder, and is unit-norm."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from filters.config import EmbeddingConfig, ScoringConfig
from filters.embedding import EMBEDDING_TYPE, ImageEmbeddingScorer
from filters.registry import resolve
from flywheel.aesthetics.embed import LiteEmbedder
from flywheel.imaging import decode
from flywheel.imaging import square_centre_crop as centre_crop
from flywheel.taxonomy import class_paths, path_of
from tests.images import encode, photo_like


def test_filter_embedding_matches_the_training_embedder_and_is_unit_norm() -> None:
    rgbs = [photo_like(96, 64, seed=s) for s in range(3)]
    scorer = ImageEmbeddingScorer(EmbeddingConfig(device="cpu", batch_size=2))
    inputs = np.stack([scorer.prepare(decode(encode(r, "PNG"), 256)) for r in rgbs])
    scored = scorer(inputs, [None] * 3)
    out = scored["image_embedding"]
    emb = np.stack(out)
    assert emb.shape == (3, 1280) and np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-5)
    # the training/bench embedder on the same pixels gives the same vectors (the aesthetic head reads these)
    ref = LiteEmbedder("cpu").embed([centre_crop(r, 224) for r in rgbs])
    assert np.allclose(emb, ref, atol=1e-4)
    assert len({tuple(np.round(e[:8], 4)) for e in emb}) == 3  # distinct images, distinct vectors
    arrays = scorer.to_arrays({**{k: [v[0], None, v[2]] for k, v in scored.items()}})
    arr = arrays["image_embedding"]
    assert arr.type == EMBEDDING_TYPE and arr.null_count == 1 and isinstance(arr, pa.FixedSizeListArray)
    assert all(p in class_paths() for p in scored["taxonomy_path"]) and all(0 < q <= 1 for q in scored["imagenet_prob"])


def test_the_same_pass_classifies_and_places_the_class_in_the_taxonomy() -> None:
    from skimage import data

    scorer = ImageEmbeddingScorer(EmbeddingConfig(device="cpu"))
    photos = {"coffee": data.coffee(), "chelsea": data.chelsea()}
    inputs = np.stack([scorer.prepare(decode(encode(r, "PNG"), 256)) for r in photos.values()])
    out = scorer(inputs, [None, None])
    assert out["imagenet_label"] == ["espresso", "Egyptian cat"]
    assert out["taxonomy_path"] == ["food", "animal/cat"]
    assert len(class_paths()) == 1000 and path_of(207) == "animal/dog" and path_of(817) == "object/vehicle"


def test_embedding_filters_bring_the_shared_pass_with_them() -> None:
    names = [c.name for c in resolve(["aesthetics"])]
    assert "embedding" in names and names.index("embedding") < names.index("aesthetics")
    assert "embedding" not in [c.name for c in resolve(None)]  # opt-in: plain score stays stage-1 fast
    assert ImageEmbeddingScorer.from_config(ScoringConfig()).cfg == EmbeddingConfig()
