"""The rotation follower of the shared embedding: head format, nulls, the shipped head on held-out content.

Accuracy is measured on the report split by bench/train_rotation_embed.py (docs/rotation.md); here the shipped
head is checked on images of no training source (a scikit-image photo of the tune side, a procedural scene of
another seed) so a broken head or a wrong view geometry fails loudly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from filters.base import ScorerUnavailable
from filters.config import RotationConfig, ScoringConfig
from filters.embedding import ImageEmbeddingScorer
from filters.registry import resolve
from filters.rotation_embed import DEFAULT_HEAD, RotationEmbedScorer, RotationHead, load_head, save_head
from flywheel.aesthetics.head import FEATURE_DIM
from flywheel.imaging import decode, encode_jpeg


def _random_head(rng: np.random.Generator, hidden: int = 8) -> RotationHead:
    return RotationHead(
        np.zeros(FEATURE_DIM, np.float32),
        np.ones(FEATURE_DIM, np.float32),
        [rng.normal(size=(hidden, FEATURE_DIM)).astype(np.float32), rng.normal(size=(4, hidden)).astype(np.float32)],
        [rng.normal(size=hidden).astype(np.float32), rng.normal(size=4).astype(np.float32)],
    )


def test_head_roundtrip_forward_and_refusals(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    head = _random_head(rng)
    path = tmp_path / "h.safetensors"
    save_head(path, head, {"command": "test"})
    loaded, meta = load_head(path)
    x = rng.normal(size=(5, FEATURE_DIM)).astype(np.float32)
    logits = np.maximum(x @ head.weights[0].T + head.biases[0], 0) @ head.weights[1].T + head.biases[1]
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(loaded.predict(x), expected / expected.sum(1, keepdims=True), rtol=1e-5, atol=1e-6)
    assert meta["command"] == "test"
    from safetensors.numpy import save_file

    other = tmp_path / "other.safetensors"
    save_file({"mean": np.zeros(3, np.float32)}, str(other), metadata={"format": "something-else"})
    with pytest.raises(ScorerUnavailable, match="retrain"):
        RotationEmbedScorer(other).load()
    missing = RotationEmbedScorer.from_config(ScoringConfig(rotation=RotationConfig(embed_head=str(tmp_path / "no"))))
    assert "rotation.embed_head" in (missing.available() or "")


def test_score_embeddings_nulls_undecodable_rows(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    path = tmp_path / "h.safetensors"
    save_head(path, _random_head(rng), {})
    scorer = RotationEmbedScorer(path)
    emb = rng.normal(size=(3, FEATURE_DIM)).astype(np.float32)
    out = scorer(emb, np.array([True, False, True]), [None] * 3)
    assert out["rotation_embed_pred"][1] is None and out["rotation_embed_upright_prob"][1] is None
    assert set(out["rotation_embed_pred"][::2]) <= {0, 90, 180, 270}
    assert all(0.0 <= p <= 1.0 for p in out["rotation_embed_upright_prob"][::2])
    assert scorer.counters.rows == 3 and scorer.counters.nulls == 1


def test_follower_brings_the_shared_pass_and_the_shipped_head_has_provenance() -> None:
    names = [c.name for c in resolve(["rotation_embed"])]
    assert names.index("embedding") < names.index("rotation_embed")
    meta = load_head(DEFAULT_HEAD)[1]
    assert {"threshold", "data", "report_split", "command"} <= set(meta)


def test_shipped_head_reads_orientation_of_held_out_images() -> None:
    from skimage import data

    from corpus.hard import landscape

    photo = np.ascontiguousarray(data.astronaut())  # a tune-side photo: never trained on
    scene = np.asarray(landscape(np.random.default_rng(987_654), 640, 480))  # a seed of no split
    embedder = ImageEmbeddingScorer()
    scorer = RotationEmbedScorer()
    for rgb in (photo, scene):
        shown = [np.ascontiguousarray(np.rot90(rgb, -k)) for k in range(4)]  # clockwise by 90k
        inputs = np.stack([embedder.prepare(decode(encode_jpeg(s, quality=90), 256)) for s in shown])
        out = scorer(embedder.embed(inputs), np.ones(4, bool), [None] * 4)
        # Upright vs rotated is what the filter rules on (which quarter turn it was is weaker: docs/rotation.md).
        assert out["rotation_embed_pred"][0] == 0 and 0 not in out["rotation_embed_pred"][1:]
        upright = out["rotation_embed_upright_prob"]
        assert upright[0] > 0.5 and max(upright[1:]) < 0.1
