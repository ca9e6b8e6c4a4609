"""Shared setup of training and inference: device choice, the three parts (latents, encoder, MMDiT), and the
condition call, so `train`, `generate` and `evaluate` build exactly the same model from a stage config."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from PIL import Image

from flywheel.errors import UserError
from trainer.config import StageConfig
from trainer.encoders import MiniLMCondition, VLMCondition, build_encoder
from trainer.latents import Latents, build_latents
from trainer.model.mmdit import MMDiT, build_mmdit


def pick_device(requested: str) -> str:
    if requested == "cuda" and not torch.cuda.is_available():
        raise UserError("train.device is cuda but no CUDA GPU is visible; use device: auto or cpu")
    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """[B, 3, H, W] in [-1, 1] -> PIL images."""
    arr = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
    return [Image.fromarray(a.numpy()) for a in arr]


def from_pil(images: Sequence[Image.Image], size: tuple[int, int]) -> torch.Tensor:
    """PIL images -> [B, 3, H, W] in [-1, 1] at `size` (width, height)."""
    import numpy as np

    arrays = [np.asarray(im.convert("RGB").resize(size, Image.Resampling.BICUBIC), dtype=np.float32) for im in images]
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).div(127.5).sub(1.0)


@dataclass
class Parts:
    cfg: StageConfig
    device: str
    latents: Latents
    encoder: MiniLMCondition | VLMCondition
    model: MMDiT

    def condition(self, texts: Sequence[str], sources: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder features for prompts; a VLM also sees the edit's source image (semantic path)."""
        images = to_pil(sources) if sources is not None and isinstance(self.encoder, VLMCondition) else None
        hidden, mask = self.encoder.encode(list(texts), images, self.cfg.data.max_text_tokens)
        return hidden.to(self.device), mask.to(self.device)


def build_parts(
    cfg: StageConfig, encoder: MiniLMCondition | VLMCondition | None = None, device: str | None = None
) -> Parts:
    dev = device or pick_device(cfg.train.device)
    latents = build_latents(cfg.latents, dev)
    enc = encoder or build_encoder(cfg.encoder, dev)
    with torch.random.fork_rng(devices=[]):  # initial weights are a function of the stage seed only
        torch.manual_seed(cfg.train.seed)
        model = build_mmdit(cfg.model, latents.token_channels, enc.dim).to(dev)
    return Parts(cfg=cfg, device=dev, latents=latents, encoder=enc, model=model)
