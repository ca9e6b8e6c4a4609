"""Latent spaces: pixel patches (default) or a VAE from a local folder.

Why pixels by default: no VAE with real weights installs offline here, and pixel-space patches keep the whole
trainer honest and testable (patchify/unpatchify are exact inverses). A user with a diffusers `AutoencoderKL`
(or a Qwen-Image VAE saved in that format) points `latents.vae_path` at it; its scaling/shift factors are read
from its config (or overridden in the stage YAML) so the MMDiT sees roughly unit-variance latents.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from flywheel.config import ConfigError
from trainer.config import LatentConfig
from trainer.model.mmdit import Grid


def patchify(x: torch.Tensor, p: int) -> tuple[torch.Tensor, Grid]:
    """[B, C, H, W] -> tokens [B, (H/p)*(W/p), C*p*p] and the token grid."""
    b, c, h, w = x.shape
    if h % p or w % p:
        raise ValueError(f"image {h}x{w} is not divisible by patch size {p}")
    tokens = x.reshape(b, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5).reshape(b, (h // p) * (w // p), c * p * p)
    return tokens, Grid(h // p, w // p)


def unpatchify(tokens: torch.Tensor, grid: Grid, p: int, channels: int) -> torch.Tensor:
    b = tokens.shape[0]
    x = tokens.reshape(b, grid.height, grid.width, channels, p, p).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, channels, grid.height * p, grid.width * p)


class Latents(Protocol):
    """Maps images in [-1, 1] ([B, 3, H, W]) to latent tokens and back."""

    token_channels: int
    downsample: int  # pixels per token side (patch size x VAE factor)

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, Grid]: ...

    def decode(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor: ...


@dataclass
class PixelLatents:
    patch_size: int = 2

    @property
    def token_channels(self) -> int:
        return 3 * self.patch_size**2

    @property
    def downsample(self) -> int:
        return self.patch_size

    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        return patchify(images, self.patch_size)

    def decode(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        return unpatchify(tokens, grid, self.patch_size, 3).clamp(-1, 1)


class VAELatents:
    """A diffusers AutoencoderKL from a local folder; latents are (z - shift) * scale, then patchified."""

    def __init__(self, cfg: LatentConfig, device: str) -> None:
        try:
            from diffusers import AutoencoderKL  # optional dependency: lazy so the default path never needs it
        except ImportError as exc:
            raise ConfigError(
                "latents.kind: vae needs the `diffusers` package (pip install diffusers), or use latents.kind: pixels"
            ) from exc
        path = Path(cfg.vae_path or "")
        if not (path / "config.json").is_file():
            raise ConfigError(f"latents.vae_path {path} has no config.json (save the VAE with save_pretrained)")
        self.vae = AutoencoderKL.from_pretrained(path, local_files_only=True).eval().to(device).requires_grad_(False)
        vcfg = self.vae.config
        self.scale = cfg.scaling_factor if cfg.scaling_factor is not None else float(vcfg.scaling_factor)
        self.shift = cfg.shift_factor if cfg.shift_factor is not None else float(getattr(vcfg, "shift_factor", 0) or 0)
        self.channels = int(vcfg.latent_channels)
        self.patch_size = cfg.patch_size
        self.factor = 2 ** (len(vcfg.block_out_channels) - 1)

    @property
    def token_channels(self) -> int:
        return self.channels * self.patch_size**2

    @property
    def downsample(self) -> int:
        return self.factor * self.patch_size

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> tuple[torch.Tensor, Grid]:
        z = self.vae.encode(images.to(self.vae.dtype)).latent_dist.mode()
        return patchify((z.float() - self.shift) * self.scale, self.patch_size)

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor, grid: Grid) -> torch.Tensor:
        z = unpatchify(tokens, grid, self.patch_size, self.channels) / self.scale + self.shift
        return self.vae.decode(z.to(self.vae.dtype)).sample.float().clamp(-1, 1)


def build_latents(cfg: LatentConfig, device: str) -> PixelLatents | VAELatents:
    if cfg.kind == "pixels":
        return PixelLatents(cfg.patch_size)
    return VAELatents(cfg, device)
