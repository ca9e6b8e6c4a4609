"""Embedding spaces and the embedder protocols the retrieval engine is fed through.

The core never loads a model: the pipelines hand it embedder objects (EfficientNet-Lite0, MiniLM, CLIP towers)
that satisfy these protocols. Every table records the space it holds, because a vector is meaningless without
the model that made it: a query must be embedded in the same space as the table it searches.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

FIELDS = ("image", "caption")  # what a table embeds: the pool image, or the pool caption


@dataclass(frozen=True)
class EmbeddingSpace:
    """A model's output space: `model` names the model (and tower-sharing family), `dim` its width.

    `text_queries` says whether texts can be embedded into this space (true for text models and for CLIP,
    whose text tower shares the image tower's space), which is what makes text-to-image search possible.
    """

    model: str
    dim: int
    text_queries: bool

    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9]+", "_", self.model).strip("_").lower() + f"_{self.dim}"

    def describe(self) -> str:
        return f"{self.model} (dim {self.dim})"


def table_name(field: str, space: EmbeddingSpace) -> str:
    if field not in FIELDS:
        raise ValueError(f"unknown embedded field {field!r}; known: {FIELDS}")
    return f"{field}__{space.slug()}"


class ImageEmbedder(Protocol):
    """Embeds encoded images; rows that cannot be decoded come back as None in `embed_images`' mask."""

    space: EmbeddingSpace

    def embed_images(self, images: Sequence[bytes | None]) -> tuple[np.ndarray, np.ndarray]:
        """Return (vectors [B, dim] float32 L2-normalised, ok [B] bool); rows with ok False hold zeros."""
        ...


class TextEmbedder(Protocol):
    space: EmbeddingSpace

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Return vectors [B, dim] float32, L2-normalised."""
        ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)
