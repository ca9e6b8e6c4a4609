"""MiniLM from the shipped weights: paraphrases embed closer than unrelated texts; token features are masked."""

from __future__ import annotations

import numpy as np

from flywheel.models.text_encoder import MiniLMEncoder


def test_embeddings_rank_paraphrases_first():
    enc = MiniLMEncoder.load()
    v = enc.embed(["a cat sitting on a sofa", "a kitten resting on a couch", "a rocket launch at night"])
    assert v.shape == (3, enc.dim) and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.3


def test_token_features_and_mask():
    enc = MiniLMEncoder.load()
    hidden, mask = enc.token_features(["hi", "a much longer sentence than the first one"], max_length=16)
    assert hidden.shape[:2] == mask.shape and hidden.shape[2] == 384
    assert mask[0].sum() < mask[1].sum()
