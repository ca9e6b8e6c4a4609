"""Image-caption agreement as the cosine similarity of open_clip embeddings.

The Qwen-Image data pipeline drops pairs whose caption does not describe the image; a
CLIP cosine is the usual first cut. Weights are never fetched: `clip.checkpoint` must
name a local file (safetensors preferred; .pt/.bin go through open_clip's
`torch.load(weights_only=True)`), otherwise the column stays null and `available()`
says which key to set. Custom architectures come from an open_clip model JSON
(`clip.model_config`), registered with `open_clip.add_model_config`; the model name is
the file's stem, as in open_clip's own registry. `load()` sets HF_HUB_OFFLINE=1 (unless
already set) and passes the checkpoint as an absolute path, so neither a pretrained tag
nor a hub schema can trigger a download; architectures whose text tower or tokenizer comes
from Hugging Face (`hf_model_name`, `hf_tokenizer_name`, SigLIP) therefore need those
files in the local HF cache already.

Preprocessing is split like every ModelScorer: `prepare` (decode task) does open_clip's
eval transform up to the tensor - bicubic resize of the shorter side to the model's
`image_size`, then center crop - and returns uint8; `score` scales to [0, 1] and
normalizes with the model's mean/std. Both steps reproduce torchvision's arithmetic, so
the model sees the same tensor as with open_clip's own `preprocess`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from filters.base import ModelScorer, ScorerUnavailable
from filters.config import ScoringConfig
from flywheel.errors import UserError
from flywheel.imaging import Decoded
from flywheel.models.clip import DEFAULT_IMAGE_SIZE, ClipConfigError, clip_view, load_clip, model_image_size
from flywheel.schema import Column

log = logging.getLogger(__name__)

NO_WEIGHTS = (
    "CLIP score not computed: no weights configured; set clip.checkpoint in the scoring config "
    "(or FLYWHEEL_CLIP_CHECKPOINT) to a local open_clip checkpoint"
)


class ClipScorer(ModelScorer):
    """Cosine similarity of open_clip image and caption embeddings (null without a caption or weights)."""

    name: ClassVar[str] = "clip"
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "clip_score",
            pa.float32(),
            "cosine",
            "Cosine similarity of open_clip image and caption embeddings in [-1, 1]; null when the "
            "caption is missing/empty or no clip.checkpoint is configured. Comparable only within one model.",
            owner="clip",
            from_caption=True,
        ),
    )
    # Class defaults for the default ViT-B-32; instances set both from the configured model's image_size.
    input_shape: ClassVar[tuple[int, ...]] = (DEFAULT_IMAGE_SIZE, DEFAULT_IMAGE_SIZE, 3)
    view_short_side: ClassVar[int] = DEFAULT_IMAGE_SIZE
    wants_captions: ClassVar[bool] = True
    uses_gpu: ClassVar[bool] = True
    config_section: ClassVar[str | None] = "clip"

    def __init__(
        self,
        model: str = "ViT-B-32",
        checkpoint: str | None = None,
        model_config: str | None = None,
        device: str = "auto",
        batch_size: int = 32,
        threads: int | None = None,
    ) -> None:
        super().__init__()
        if device not in ("auto", "cuda", "cpu"):
            raise UserError(f"clip.device must be auto, cuda or cpu, got {device!r}")
        if batch_size < 1:
            raise UserError(f"clip.batch_size must be >= 1, got {batch_size}")
        self.checkpoint = checkpoint
        self.model_config = model_config
        self.model_name = Path(model_config).stem if model_config else model
        self.device = device
        self.batch_size = batch_size
        # torch's intra-op thread count is process-wide; set it in actor processes that share
        # cores with decode tasks (oversubscribed spinning threads measured up to 7x slower, docs/model_cost.md).
        self.threads = threads
        size = DEFAULT_IMAGE_SIZE
        if model_config is None or Path(model_config).expanduser().is_file():
            size = model_image_size(self.model_name, model_config)
        self.image_size = size
        # Per-instance: the crop size is a property of the configured architecture.
        self.input_shape = (size, size, 3)  # type: ignore[misc]
        self.view_short_side = size  # type: ignore[misc]
        self._model: Any = None
        self._tokenizer: Any = None
        self._preprocess: Any = None
        self._mean: Any = None
        self._std: Any = None
        self._torch_device = "cpu"

    def __getstate__(self) -> dict[str, Any]:
        # Ship the configuration, not the weights: each actor loads its own model in load().
        state = self.__dict__.copy()
        for key in ("_model", "_tokenizer", "_preprocess", "_mean", "_std"):
            state[key] = None
        return state

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> ClipScorer:
        c = cfg.clip
        return cls(
            model=c.model,
            checkpoint=c.checkpoint,
            model_config=c.model_config,
            device=c.device,
            batch_size=c.batch_size,
        )

    def available(self) -> str | None:
        if self.model_name.startswith(("hf-hub:", "local-dir:")):
            return (
                f"CLIP score not computed: clip.model={self.model_name!r} names a hub/dir schema; "
                "set clip.model to an architecture name (or clip.model_config to its JSON) and "
                "clip.checkpoint to a local weights file"
            )
        if self.checkpoint is None:
            return NO_WEIGHTS
        if not Path(self.checkpoint).expanduser().is_file():
            return (
                f"CLIP score not computed: clip.checkpoint={self.checkpoint!r} is not a file; set clip.checkpoint "
                "in the scoring config (or FLYWHEEL_CLIP_CHECKPOINT) to a local open_clip checkpoint"
            )
        if self.model_config is not None and not Path(self.model_config).expanduser().is_file():
            return (
                f"CLIP score not computed: clip.model_config={self.model_config!r} is not a file; set it to an "
                "open_clip model JSON (or unset it to use a built-in architecture)"
            )
        return None

    def not_configured(self) -> bool:
        # The documented null: no clip.checkpoint at all (CLIP weights are not shipped).
        return self.checkpoint is None

    def prepare(self, decoded: Decoded) -> np.ndarray:
        if decoded.rgb is None:
            raise ValueError("prepare() needs a decoded view; broken samples must be skipped by the caller")
        return clip_view(decoded.rgb, self.image_size)

    def load(self) -> None:
        if self._model is not None:
            return
        message = self.available()
        if message is not None:
            raise ScorerUnavailable(message)
        try:
            loaded = load_clip(
                self.model_name, self.checkpoint or "", self.model_config, self.device, self.threads, key="clip"
            )
        except ClipConfigError as exc:
            raise ScorerUnavailable(f"CLIP score not computed: {exc}") from exc
        if loaded.image_size != self.image_size:
            raise RuntimeError(
                f"clip model {self.model_name} has image_size {loaded.image_size} but prepare() crops {self.image_size}"
            )
        self._torch_device = loaded.device
        self._mean, self._std = loaded.mean, loaded.std
        self._tokenizer = loaded.tokenizer
        self._preprocess = loaded.preprocess
        self._model = loaded.model

    def _encode_pairs(self, images: np.ndarray, texts: list[str]) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        pixels = torch.from_numpy(np.ascontiguousarray(images)).to(self._torch_device)
        pixels = (pixels.permute(0, 3, 1, 2).float() / 255.0 - self._mean) / self._std
        tokens = self._tokenizer(texts).to(self._torch_device)
        with torch.inference_mode():
            if self._torch_device == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                with torch.autocast("cuda", dtype=dtype):
                    img_f, txt_f = self._model.encode_image(pixels), self._model.encode_text(tokens)
            else:
                img_f, txt_f = self._model.encode_image(pixels), self._model.encode_text(tokens)
            img_f = F.normalize(img_f.float(), dim=-1)
            txt_f = F.normalize(txt_f.float(), dim=-1)
            cos = (img_f * txt_f).sum(dim=-1).clamp(-1.0, 1.0)
        return cos.cpu().numpy()

    def score(self, inputs: np.ndarray, captions: list[str | None]) -> dict[str, Sequence[Any]]:
        if self._model is None:
            self.load()
        n = len(inputs)
        if len(captions) != n:
            raise ValueError(f"clip got {n} images but {len(captions)} captions")
        if n and tuple(inputs.shape[1:]) != self.input_shape:
            raise ValueError(f"clip expects inputs of shape (N, *{self.input_shape}), got {inputs.shape}")
        out: list[float | None] = [None] * n
        keep = [i for i, c in enumerate(captions) if c is not None and c.strip()]
        for start in range(0, len(keep), self.batch_size):
            idx = keep[start : start + self.batch_size]
            cos = self._encode_pairs(inputs[idx], [captions[i] or "" for i in idx])
            for i, value in zip(idx, cos.tolist(), strict=True):
                out[i] = float(value)
        return {"clip_score": out}
