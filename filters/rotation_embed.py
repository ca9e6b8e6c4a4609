"""Rotation from the shared image embedding: a 4-way head, no network of its own (an embedding follower).

Why: EfficientNet features are not rotation invariant, so the shared `image_embedding` of the image as
displayed already says which way up it is. A small head over it (softmax regression or a one-hidden-layer
MLP) predicts which clockwise rotation (0/90/180/270) was applied to an upright image to give the displayed
one. It reads the embedding the pipeline computes once per image for every embedding filter, so rotation
costs a matrix product instead of the four backbone passes of `filters/rotation_net.py`. Trained
self-supervised (every upright view built offline shown in its four rotations) by
`bench/train_rotation_embed.py`; data, figures and limits in docs/rotation.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from filters.base import EmbeddingScorer, ScorerUnavailable
from filters.config import ScoringConfig
from flywheel.aesthetics.head import FEATURE_DIM, FEATURE_VERSION
from flywheel.schema import Column

DEFAULT_HEAD = Path(__file__).parent / "data" / "rotation_embed_head.safetensors"
HEAD_FORMAT = "rotation-embed-mlp-v1"


@dataclass(frozen=True)
class RotationHead:
    """Standardisation, then linear layers with ReLU between them; 4 logits (applied rotation 0/90/180/270)."""

    mean: np.ndarray
    scale: np.ndarray
    weights: list[np.ndarray]  # (out, in) each, as torch.nn.Linear stores them
    biases: list[np.ndarray]

    def logits(self, embeddings: np.ndarray) -> np.ndarray:
        h = (np.asarray(embeddings, dtype=np.float32) - self.mean) / self.scale
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w.T + b
            if i < len(self.weights) - 1:
                h = np.maximum(h, 0.0)
        return h

    def predict(self, embeddings: np.ndarray) -> np.ndarray:
        """(n, 4) probabilities that the displayed image is the upright one rotated clockwise by 90k."""
        s = self.logits(embeddings)
        s = s - s.max(axis=1, keepdims=True)
        p = np.exp(s)
        return p / p.sum(axis=1, keepdims=True)


def save_head(path: Path, head: RotationHead, meta: dict[str, str]) -> None:
    from safetensors.numpy import save_file

    tensors = {"mean": head.mean.astype(np.float32), "scale": head.scale.astype(np.float32)}
    for i, (w, b) in enumerate(zip(head.weights, head.biases, strict=True)):
        tensors[f"w{i}"] = np.ascontiguousarray(w, dtype=np.float32)
        tensors[f"b{i}"] = np.ascontiguousarray(b, dtype=np.float32)
    save_file(tensors, str(path), metadata={"format": HEAD_FORMAT, "feature_version": FEATURE_VERSION, **meta})


def load_head(path: Path) -> tuple[RotationHead, dict[str, str]]:
    """The head and its provenance; refuses a file made for other embeddings or another layout."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = dict(f.metadata() or {})
        if meta.get("format") != HEAD_FORMAT or meta.get("feature_version") != FEATURE_VERSION:
            raise ScorerUnavailable(
                f"{path}: head format {meta.get('format')!r} over {meta.get('feature_version')!r}, this code "
                f"reads {HEAD_FORMAT!r} over {FEATURE_VERSION!r}; retrain with bench/train_rotation_embed.py"
            )
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open has no __iter__
    n = sum(1 for k in tensors if k.startswith("w"))
    head = RotationHead(
        tensors["mean"], tensors["scale"], [tensors[f"w{i}"] for i in range(n)], [tensors[f"b{i}"] for i in range(n)]
    )
    if head.mean.shape != (FEATURE_DIM,) or head.weights[0].shape[1] != FEATURE_DIM or head.weights[-1].shape[0] != 4:
        raise ScorerUnavailable(f"{path}: head shapes do not map {FEATURE_DIM}-d embeddings to 4 rotations")
    return head, meta


class RotationEmbedScorer(EmbeddingScorer):
    """`rotation_embed_pred` / `rotation_embed_upright_prob` from the shared embedding (one matrix product)."""

    name: ClassVar[str] = "rotation_embed"
    config_section: ClassVar[str | None] = "rotation"
    # Opt-in: it rides on the shared embedding pass (added with it); the stage-1 rule reads rotation_net, which
    # measured better (docs/rotation.md).
    default_on: ClassVar[bool] = False
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "rotation_embed_pred",
            pa.int16(),
            "degrees",
            "Estimate, from the shared image embedding, of the clockwise rotation applied to an upright image "
            "to give the displayed one (0, 90, 180, 270). Null for undecodable images.",
            owner="rotation_embed",
        ),
        Column(
            "rotation_embed_upright_prob",
            pa.float32(),
            "probability",
            "Probability that the displayed (EXIF-transposed) image is upright, from the head over the shared "
            "image embedding (the four rotations equally likely a priori). Null for undecodable images.",
            owner="rotation_embed",
        ),
    )
    view_short_side: ClassVar[int] = 0
    uses_gpu: ClassVar[bool] = False

    def __init__(self, head_path: str | Path | None = None) -> None:
        super().__init__()
        self.head_path = Path(head_path).expanduser() if head_path else DEFAULT_HEAD
        self._head: RotationHead | None = None

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> RotationEmbedScorer:
        return cls(cfg.rotation.embed_head)

    def available(self) -> str | None:
        if self.head_path.is_file():
            return None
        return f"rotation_embed not computed: rotation.embed_head={str(self.head_path)!r} is not a file"

    def load(self) -> None:
        if self._head is not None:
            return
        message = self.available()
        if message is not None:
            raise ScorerUnavailable(message)
        self._head = load_head(self.head_path)[0]

    def score_embeddings(
        self, embeddings: np.ndarray, ok: np.ndarray, captions: list[str | None]
    ) -> dict[str, Sequence[Any]]:
        self.load()
        assert self._head is not None
        n = len(embeddings)
        pred: list[int | None] = [None] * n
        upright: list[float | None] = [None] * n
        ok = np.asarray(ok, dtype=bool)
        if ok.any():
            p = self._head.predict(np.asarray(embeddings)[ok])
            for i, row in zip(np.flatnonzero(ok).tolist(), p.tolist(), strict=True):
                pred[i] = int(np.argmax(row)) * 90
                upright[i] = float(row[0])
        return {"rotation_embed_pred": pred, "rotation_embed_upright_prob": upright}
