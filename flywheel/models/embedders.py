"""Concrete embedders for the retrieval engine: EfficientNet-Lite0 images, MiniLM captions, CLIP towers.

They satisfy the core's `ImageEmbedder`/`TextEmbedder` protocols (flywheel.retrieval.space), so the core
never imports a model loader of another layer. Models load lazily (`_ensure`) so that an embedder object can
be shipped to Ray actors as configuration and each actor loads its own weights.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flywheel.errors import MissingInput
from flywheel.imaging import decode
from flywheel.models.clip import ClipConfigError, LoadedClip, check_clip_files, clip_view, load_clip
from flywheel.retrieval.config import IndexConfig
from flywheel.retrieval.space import EmbeddingSpace, l2_normalise

EFFICIENTNET_SPACE = EmbeddingSpace("efficientnet-lite0/pooled-imagenet", 1280, text_queries=False)
MINILM_SPACE = EmbeddingSpace("all-MiniLM-L6-v2/mean-pooled", 384, text_queries=True)


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _decode_views(images: Sequence[bytes | None], short_side: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Bounded decode (flywheel.imaging) of every image; undecodable ones are masked out, never guessed."""
    views, ok = [], np.zeros(len(images), dtype=bool)
    for i, data in enumerate(images):
        decoded = decode(data, view_short_side=short_side)
        if decoded.rgb is not None:
            views.append(decoded.rgb)
            ok[i] = True
    return views, ok


class EfficientNetImageEmbedder:
    """ImageNet EfficientNet-Lite0 pooled features (1280-d), L2-normalised: image-to-image search offline."""

    space = EFFICIENTNET_SPACE

    def __init__(self, image_size: int = 224) -> None:
        self.image_size = image_size
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def _ensure(self) -> Any:
        if self._model is None:
            from flywheel.models.efficientnet_lite import load_efficientnet_lite0

            self._model = load_efficientnet_lite0(_device())
        return self._model

    def embed_images(self, images: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        from flywheel.models.efficientnet_lite import preprocess

        out = np.zeros((len(images), self.space.dim), dtype=np.float32)
        views, ok = _decode_views(images, self.image_size)
        if views:
            model = self._ensure()
            batch = preprocess([Image.fromarray(v) for v in views], self.image_size).to(next(model.parameters()).device)
            with torch.inference_mode():
                feats = model.features(batch).float().cpu().numpy()
            out[ok] = l2_normalise(feats)
        return out, ok


class MiniLMTextEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (384-d): caption search and prompt coverage offline."""

    space = MINILM_SPACE

    def __init__(self, max_length: int = 64) -> None:
        self.max_length = max_length
        self._encoder: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_encoder": None}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self._encoder is None:
            from flywheel.models.text_encoder import MiniLMEncoder

            self._encoder = MiniLMEncoder.load(_device())
        if not texts:
            return np.zeros((0, self.space.dim), dtype=np.float32)
        return self._encoder.embed(list(texts), max_length=self.max_length)


class ClipEmbedder:
    """open_clip image and text towers from a local checkpoint: one space, so text queries find images.

    Loading follows `flywheel.models.clip` (checkpoint checks, offline guarantees, custom configs), the same
    rules the `clip` filter uses; the model loads on first use, so the object ships to Ray as config.
    """

    def __init__(self, model: str, checkpoint: str, model_config: str | None = None) -> None:
        self.model, self.checkpoint, self.model_config = model, checkpoint, model_config
        name = Path(model_config).stem if model_config else model
        problem = check_clip_files(name, checkpoint, model_config, key="index clip")
        if problem is not None:
            raise MissingInput(f"CLIP index not built: {problem}".replace("index clip.", "index clip_"))
        self._clip: LoadedClip | None = None
        self.space = EmbeddingSpace(f"open_clip/{name}", self._loaded().embed_dim, text_queries=True)

    def _loaded(self) -> LoadedClip:
        if self._clip is None:
            try:
                self._clip = load_clip(self.model, self.checkpoint, self.model_config, key="index clip")
            except ClipConfigError as exc:
                raise MissingInput(f"CLIP index not built: {exc}".replace("index clip.", "index clip_")) from exc
        return self._clip

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clip": None}

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.space.dim), dtype=np.float32)
        return l2_normalise(self._loaded().encode_texts(list(texts)))

    def embed_images(self, images: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        clip = self._loaded()
        out = np.zeros((len(images), self.space.dim), dtype=np.float32)
        views, ok = _decode_views(images, clip.image_size)
        if views:
            crops = np.stack([clip_view(v, clip.image_size) for v in views])
            out[ok] = l2_normalise(clip.encode_images(crops))
        return out, ok


def clip_from_config(cfg: IndexConfig) -> ClipEmbedder | None:
    """The CLIP embedder when weights are configured (config or FLYWHEEL_CLIP_CHECKPOINT), else None."""
    checkpoint = cfg.clip_checkpoint or os.environ.get("FLYWHEEL_CLIP_CHECKPOINT")
    if not checkpoint:
        return None
    if not Path(checkpoint).expanduser().is_file():
        raise MissingInput(
            f"index clip_checkpoint {checkpoint!r} is not a file; set it to a local open_clip "
            "checkpoint or unset it (and FLYWHEEL_CLIP_CHECKPOINT)"
        )
    return ClipEmbedder(cfg.clip_model, checkpoint, cfg.clip_model_config)
