"""The shared image embedding: one network pass per image that every embedding filter reads.

Why one pass: aesthetics, semantic dedup and (later) categories each need an image embedding; a network per
filter multiplied the model cost (the four-rotation CNN alone took most of a model run). This model scorer
computes EfficientNet-Lite0 pooled ImageNet features of the 224 px centre crop, L2-normalised
(`flywheel.aesthetics.head.FEATURE_VERSION`, the embedding the shipped aesthetic head was trained on), stores
them in the pool as `image_embedding`, and in the same actor hands the stacked batch to every enabled
`EmbeddingScorer` (see `pipelines/steps/score_stages.py`). Semantic dedup reads the stored column at select
time, so it never runs the network again.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from filters.base import ModelScorer
from filters.config import EmbeddingConfig, ScoringConfig
from flywheel.aesthetics.head import FEATURE_DIM, FEATURE_VERSION
from flywheel.errors import UserError
from flywheel.imaging import Decoded, square_centre_crop
from flywheel.schema import Column
from flywheel.taxonomy import TAXONOMY_VERSION, path_of

VIEW = 224  # square side the backbone sees: the shorter side resized to it, then the centre crop
EMBEDDING_TYPE = pa.list_(pa.float32(), FEATURE_DIM)


class ImageEmbeddingScorer(ModelScorer):
    """`image_embedding`: the shared EfficientNet-Lite0 embedding (1280-d, L2-normalised)."""

    name: ClassVar[str] = "embedding"
    config_section: ClassVar[str | None] = "embedding"
    # Opt-in: a plain `flywheel score` stays stage-1 fast. Resolving any embedding filter adds it.
    default_on: ClassVar[bool] = False
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "image_embedding",
            EMBEDDING_TYPE,
            "l2-unit vector",
            f"Shared image embedding ({FEATURE_VERSION}): EfficientNet-Lite0 pooled ImageNet features of the "
            f"{VIEW} px centre crop of the decoded view, L2-normalised, {FEATURE_DIM} float32. Read by the "
            "aesthetic head and by `dedup: semantic`; cosine = dot product. Null for undecodable images.",
            owner="embedding",
        ),
        Column(
            "imagenet_label",
            pa.string(),
            "",
            "Top-1 ImageNet-1k class of EfficientNet-Lite0's own classifier on the same pass (75% top-1 on "
            "ImageNet as published); null for undecodable images.",
            owner="embedding",
        ),
        Column(
            "imagenet_prob", pa.float32(), "probability", "Softmax probability of imagenet_label.", owner="embedding"
        ),
        Column(
            "taxonomy_path",
            pa.string(),
            "path",
            f"Node of the coarse two-level taxonomy ({TAXONOMY_VERSION}, flywheel/taxonomy.py) of imagenet_label: "
            "animal/dog, object/vehicle, food, nature/landscape, person, plant, ...; recipes rank and cap by it.",
            owner="embedding",
        ),
    )
    view_short_side: ClassVar[int] = VIEW
    input_shape: ClassVar[tuple[int, ...]] = (VIEW, VIEW, 3)
    uses_gpu: ClassVar[bool] = True

    def __init__(self, cfg: EmbeddingConfig | None = None, threads: int | None = None) -> None:
        super().__init__()
        cfg = cfg or EmbeddingConfig()
        if cfg.device not in ("auto", "cuda", "cpu"):
            raise UserError(f"embedding.device must be auto, cuda or cpu, got {cfg.device!r}")
        if cfg.batch_size < 1:
            raise UserError(f"embedding.batch_size must be >= 1, got {cfg.batch_size}")
        self.cfg = cfg
        self.threads = threads
        self._model: Any = None
        self._device = "cpu"

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> ImageEmbeddingScorer:
        return cls(cfg.embedding)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}  # each actor loads its own backbone

    def prepare(self, decoded: Decoded) -> np.ndarray:
        """The centre crop the backbone sees, uint8 (decode task): 150 KB per sample to the actor."""
        if decoded.rgb is None:
            raise ValueError("prepare() needs a decoded view; broken samples must be skipped by the caller")
        return square_centre_crop(decoded.rgb, VIEW)

    def load(self) -> None:
        if self._model is not None:
            return
        import torch

        from flywheel.models.efficientnet_lite import load_efficientnet_lite0

        if self.threads is not None:
            torch.set_num_threads(self.threads)
        device = self.cfg.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self._device = device
        self._model = load_efficientnet_lite0(device)

    def embed(self, inputs: np.ndarray) -> np.ndarray:
        """(n, 1280) float32 L2-normalised embeddings of prepared (n, 224, 224, 3) uint8 crops."""
        return self.embed_and_classify(inputs)[0]

    def embed_and_classify(self, inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and ImageNet class probabilities (n, 1000) from one backbone pass."""
        import torch

        from flywheel.models.efficientnet_lite import MEAN, STD

        self.load()
        out = np.zeros((len(inputs), FEATURE_DIM), dtype=np.float32)
        probs = np.zeros((len(inputs), 1000), dtype=np.float32)
        mean = torch.tensor(MEAN, device=self._device).view(1, 3, 1, 1)
        std = torch.tensor(STD, device=self._device).view(1, 3, 1, 1)
        for start in range(0, len(inputs), self.cfg.batch_size):
            chunk = np.ascontiguousarray(inputs[start : start + self.cfg.batch_size])
            x = torch.from_numpy(chunk).to(self._device).permute(0, 3, 1, 2).float() / 255.0
            with torch.inference_mode():
                pooled = self._model.features((x - mean) / std)
                logits = self._model._fc(pooled)
            feats = pooled.float().cpu().numpy()
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            out[start : start + len(chunk)] = feats / np.maximum(norms, 1e-12)
            probs[start : start + len(chunk)] = torch.softmax(logits.float(), dim=1).cpu().numpy()
        return out, probs

    def score(self, inputs: np.ndarray, captions: list[str | None]) -> dict[str, Sequence[Any]]:
        from flywheel.models.efficientnet_lite import IMAGENET_CLASSES

        emb, probs = self.embed_and_classify(inputs)
        top = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)
        return {
            "image_embedding": list(emb),
            "imagenet_label": [IMAGENET_CLASSES[i] for i in top.tolist()],
            "imagenet_prob": probs[np.arange(len(top)), top].tolist(),
            "taxonomy_path": [path_of(i) for i in top.tolist()],
        }
