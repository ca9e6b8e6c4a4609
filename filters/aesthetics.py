"""Aesthetic score: a small head over the shared image embedding, or the LAION predictor over CLIP ViT-L/14.

Why a head of our own: no aesthetic model ships offline. The shipped head (`filters/data/aesthetic_head
.safetensors`, trained by `bench/aesthetics.py`) is an MLP over the pipeline's shared EfficientNet-Lite0
embedding, fitted on constructed preferences (a photo over its blurred, noisy, heavily compressed, washed-out,
over-saturated, badly cropped and tilted versions; `flywheel.aesthetics.degrade`). `flywheel aesthetics fit`
retrains it on a workspace's keep/reject decisions plus those pairs. What it measures is therefore technical
damage, not taste: held-out figures per degradation are in docs/aesthetics.md.

The LAION aesthetic predictor (a linear/MLP over L2-normalised CLIP ViT-L/14 image embeddings, 1-10 scale,
trained on human ratings) is used instead when the config names both local CLIP weights and the predictor's
weights. It needs pixels, not the shared embedding: on that path the scorer's `needs_pixels` is true and it
runs like a model scorer (`prepare` in the decode task, `score_pixels` in the actor).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from filters.base import EmbeddingScorer, ModelConfigError
from filters.config import AestheticsConfig, ScoringConfig
from flywheel.aesthetics.head import Head, HeadFileError, load_head
from flywheel.errors import UserError
from flywheel.imaging import Decoded
from flywheel.models.clip import (
    DEFAULT_IMAGE_SIZE,
    ClipConfigError,
    LoadedClip,
    clip_view,
    load_clip,
    model_image_size,
)
from flywheel.schema import Column

log = logging.getLogger(__name__)

DEFAULT_HEAD = Path(__file__).parent / "data" / "aesthetic_head.safetensors"


class LinearStack(Head):
    """Linear layers chained without activations: how LAION's aesthetic MLP computes (Dropout only between)."""

    def __call__(self, x: np.ndarray) -> np.ndarray:
        h = np.asarray(x, dtype=np.float32)
        if h.ndim != 2 or h.shape[1] != self.in_dim:
            raise ValueError(f"predictor expects (n, {self.in_dim}) embeddings, got {h.shape}")
        for w, b in zip(self.weights, self.biases, strict=True):
            h = h @ w.T + b
        return h[:, 0].astype(np.float32)


def load_predictor(path: str | Path) -> Head:
    """The LAION aesthetic predictor as a stack of linear layers (no activations, as LAION's MLP has none).

    Accepts LAION's state dicts as they are: `weight`/`bias` (the v1 linear model) or `layers.N.weight` /
    `layers.N.bias` (the improved MLP, Dropout between layers). Layers are chained in the natural order of
    their names. `.safetensors` is read directly; `.pth`/`.pt`/`.bin` go through torch.load(weights_only=True).
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelConfigError(f"aesthetics.predictor={str(path)!r} is not a file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.numpy import load_file

            tensors = dict(load_file(str(path)))
        else:
            import torch

            state = torch.load(str(path), map_location="cpu", weights_only=True)
            tensors = {k: v.detach().float().numpy() for k, v in state.items()}
    except Exception as exc:  # any unreadable file is the same user error
        raise ModelConfigError(f"aesthetics.predictor={str(path)!r} cannot be read: {exc}") from exc
    prefixes = [k[: -len("weight")] for k, v in tensors.items() if k.endswith("weight") and np.ndim(v) == 2]

    def natural(key: str) -> list[Any]:
        return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key)]

    prefixes.sort(key=natural)
    if not prefixes:
        raise ModelConfigError(f"aesthetics.predictor={str(path)!r} holds no linear layer weights")
    weights = [np.asarray(tensors[p + "weight"], dtype=np.float32) for p in prefixes]
    biases = [
        np.asarray(tensors.get(p + "bias", np.zeros(w.shape[0])), dtype=np.float32)
        for p, w in zip(prefixes, weights, strict=True)
    ]
    for i in range(1, len(weights)):
        if weights[i].shape[1] != weights[i - 1].shape[0]:
            raise ModelConfigError(f"aesthetics.predictor: layer {prefixes[i]!r} does not follow {prefixes[i - 1]!r}")
    if weights[-1].shape[0] != 1:
        raise ModelConfigError("aesthetics.predictor: the last layer must have one output")
    return LinearStack(weights, biases, {"source": str(path)})


class AestheticsScorer(EmbeddingScorer):
    """`aesthetic_score` from the head over the shared embedding, or from LAION's predictor when configured."""

    name: ClassVar[str] = "aesthetics"
    config_section: ClassVar[str | None] = "aesthetics"
    # Opt-in like the other high-resolution-stage scorers: recipes that rule on it add it with score-missing.
    default_on: ClassVar[bool] = False
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "aesthetic_score",
            pa.float32(),
            "bt-utility | laion-1-10",
            "Aesthetic score of the configured model. Default (the shipped or a workspace head over the shared "
            "EfficientNet-Lite0 embedding): a Bradley-Terry utility, sigmoid(a - b) = P(a preferred), 0 = mean "
            "of clean training photos, lower = more technical damage (blur, noise, blocking, washed out, "
            "over-saturated, cut-off crop); it does not judge taste. With aesthetics.checkpoint and "
            "aesthetics.predictor: the LAION predictor's 1-10 rating over CLIP ViT-L/14. Compare only within "
            "one model. Null for undecodable images.",
            owner="aesthetics",
        ),
    )
    view_short_side: ClassVar[int] = 0
    uses_gpu: ClassVar[bool] = True

    def __init__(self, cfg: AestheticsConfig | None = None, threads: int | None = None) -> None:
        super().__init__()
        cfg = cfg or AestheticsConfig()
        if cfg.device not in ("auto", "cuda", "cpu"):
            raise UserError(f"aesthetics.device must be auto, cuda or cpu, got {cfg.device!r}")
        if cfg.batch_size < 1:
            raise UserError(f"aesthetics.batch_size must be >= 1, got {cfg.batch_size}")
        self.cfg = cfg
        self.threads = threads
        self.head_path = Path(cfg.head).expanduser() if cfg.head else DEFAULT_HEAD
        self.clip_model = Path(cfg.model_config).stem if cfg.model_config else cfg.clip_model
        self.image_size = DEFAULT_IMAGE_SIZE
        if self.needs_pixels and (cfg.model_config is None or Path(cfg.model_config).expanduser().is_file()):
            self.image_size = model_image_size(self.clip_model, cfg.model_config)
        self.input_shape = (self.image_size, self.image_size, 3)
        if self.needs_pixels:
            self.view_short_side = self.image_size  # type: ignore[misc]
        self._head: Head | None = None
        self._clip: LoadedClip | None = None
        self._device = "cpu"

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> AestheticsScorer:
        return cls(cfg.aesthetics)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_clip": None}

    @property
    def needs_pixels(self) -> bool:
        """True on the LAION path: the scorer embeds pixels with CLIP instead of reading the shared embedding."""
        return self.cfg.checkpoint is not None or self.cfg.predictor is not None

    def available(self) -> str | None:
        c = self.cfg
        if self.needs_pixels:
            if c.checkpoint is None or c.predictor is None:
                return (
                    "aesthetics: the LAION path needs both aesthetics.checkpoint (local CLIP ViT-L/14 weights) "
                    "and aesthetics.predictor (the LAION predictor weights); unset both to use the head"
                )
            for key, value in (
                ("checkpoint", c.checkpoint),
                ("predictor", c.predictor),
                ("model_config", c.model_config),
            ):
                if value is not None and not Path(value).expanduser().is_file():
                    return f"aesthetics.{key}={value!r} is not a file"
            return None
        if not self.head_path.is_file():
            return f"aesthetics.head={str(self.head_path)!r} is not a file (`flywheel aesthetics fit` writes one)"
        return None

    def load(self) -> None:
        message = self.available()
        if message is not None:
            raise ModelConfigError(message)
        if self.needs_pixels:
            if self._clip is None:
                self._load_clip()
            return
        if self._head is None:
            try:
                self._head = load_head(self.head_path)
            except HeadFileError as exc:
                raise ModelConfigError(str(exc)) from exc

    # --- head path (shared embedding) ---------------------------------------------------------------------
    def score_embeddings(
        self, embeddings: np.ndarray, ok: np.ndarray, captions: list[str | None]
    ) -> dict[str, Sequence[Any]]:
        if self.needs_pixels:
            raise RuntimeError("aesthetics is configured for the LAION path: it scores pixels (score_pixels)")
        if self._head is None:
            self.load()
        assert self._head is not None
        out: list[float | None] = [None] * len(embeddings)
        ok = np.asarray(ok, dtype=bool)
        if ok.any():
            scores = self._head(np.asarray(embeddings)[ok])
            for i, s in zip(np.flatnonzero(ok).tolist(), scores.tolist(), strict=True):
                out[i] = float(s)
        return {"aesthetic_score": out}

    # --- LAION path (CLIP pixels) -------------------------------------------------------------------------
    def prepare(self, decoded: Decoded) -> np.ndarray:
        """open_clip's eval crop of the decoded view (decode task), uint8 so batches stack cheaply."""
        if decoded.rgb is None:
            raise ValueError("prepare() needs a decoded view; broken samples must be skipped by the caller")
        return clip_view(decoded.rgb, self.image_size)

    def _load_clip(self) -> None:
        c = self.cfg
        assert c.checkpoint is not None and c.predictor is not None
        predictor = load_predictor(c.predictor)
        try:
            loaded = load_clip(
                self.clip_model, c.checkpoint, c.model_config, c.device, self.threads, "aesthetics", "clip_model"
            )
        except ClipConfigError as exc:
            raise ModelConfigError(str(exc)) from exc
        if predictor.in_dim != loaded.embed_dim:
            raise ModelConfigError(
                f"aesthetics.predictor takes {predictor.in_dim}-d embeddings but {self.clip_model} gives "
                f"{loaded.embed_dim}-d (LAION's predictor expects CLIP ViT-L/14, 768-d)"
            )
        self._device = loaded.device
        self._head = predictor
        self._clip = loaded

    def clip_embeddings(self, inputs: np.ndarray) -> np.ndarray:
        """L2-normalised CLIP image embeddings of prepared uint8 crops (n, embed_dim)."""
        if self._clip is None:
            self.load()
        return self._clip.encode_images(np.asarray(inputs), self.cfg.batch_size)

    def score_pixels(self, inputs: np.ndarray, ok: np.ndarray | None = None) -> dict[str, Sequence[Any]]:
        """LAION path: prepared crops -> CLIP embedding -> predictor rating; rows with `ok` false get None."""
        if not self.needs_pixels:
            raise RuntimeError("aesthetics reads the shared embedding on this config (score_embeddings)")
        n = len(inputs)
        ok = np.ones(n, dtype=bool) if ok is None else np.asarray(ok, dtype=bool)
        out: list[float | None] = [None] * n
        if ok.any():
            if self._clip is None:
                self.load()
            assert self._head is not None
            scores = self._head(self.clip_embeddings(np.asarray(inputs)[ok]))
            for i, s in zip(np.flatnonzero(ok).tolist(), scores.tolist(), strict=True):
                out[i] = float(s)
        return {"aesthetic_score": out}

    def score_images(self, rgbs: Sequence[np.ndarray | None]) -> list[float | None]:
        """Score decoded RGB images end to end on whichever path is configured (CLI, benches, tests).

        The pipeline does not call this: it hands the head path the shared embedding of the whole batch.
        """
        ok = np.array([r is not None for r in rgbs], dtype=bool)
        if self.needs_pixels:
            crops = np.stack([clip_view(r, self.image_size) for r in rgbs if r is not None]) if ok.any() else None
            full = np.zeros((len(rgbs), *self.input_shape), dtype=np.uint8)
            if crops is not None:
                full[ok] = crops
            return list(self.score_pixels(full, ok)["aesthetic_score"])
        from flywheel.aesthetics.embed import LiteEmbedder

        emb = np.zeros((len(rgbs), 1280), dtype=np.float32)
        if ok.any():
            emb[ok] = LiteEmbedder(self.cfg.device).embed([r for r in rgbs if r is not None])
        return list(self.score_embeddings(emb, ok, [None] * len(rgbs))["aesthetic_score"])
