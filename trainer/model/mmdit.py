"""MMDiT: dual-stream transformer blocks sharing one joint attention (Qwen-Image-2.0 backbone, scaled down).

Each block keeps separate weights for the text (condition) stream and the image stream, concatenates both
streams' queries/keys/values for a single scaled-dot-product attention with MSRoPE positions, and splits the
result back. Following the Qwen-Image-2.0 report:
- modulation from the timestep is purely multiplicative: `norm(x) * (1 + scale)` and a gate on the residual,
  no shift/bias term;
- MLPs are SwiGLU, `W2(SiLU(W1 x) * W3 x)`, which keeps activation magnitudes tame in joint training;
- gates and the output projection start at zero (adaLN-Zero), so every block starts as the identity.
Edits (TI2I) append the source image's latent tokens to the image stream at frame 1 of MSRoPE; only the
target tokens are returned.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from trainer.config import ModelConfig
from trainer.model.rope import MSRoPE, apply_rope, image_positions, text_positions


@dataclass(frozen=True)
class Grid:
    """Token grid of one image in latent patches."""

    height: int
    width: int

    @property
    def tokens(self) -> int:
        return self.height * self.width


class SwiGLU(nn.Module):
    def __init__(self, dim: int, ratio: float) -> None:
        super().__init__()
        hidden = int(math.ceil(dim * ratio / 8) * 8)
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class StreamWeights(nn.Module):
    """The per-stream half of a block: modulation, qkv, output projection, SwiGLU."""

    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        d = cfg.hidden
        self.modulation = nn.Linear(d, 4 * d)  # scale_attn, gate_attn, scale_mlp, gate_mlp
        self.norm1 = nn.RMSNorm(d, elementwise_affine=False, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.q_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.k_norm = nn.RMSNorm(cfg.head_dim, eps=1e-6) if cfg.qk_norm else nn.Identity()
        self.out = nn.Linear(d, d)
        self.norm2 = nn.RMSNorm(d, elementwise_affine=False, eps=1e-6)
        self.mlp = SwiGLU(d, cfg.mlp_ratio)
        nn.init.zeros_(self.modulation.weight)
        nn.init.zeros_(self.modulation.bias)


class JointBlock(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.heads = cfg.heads
        self.txt = StreamWeights(cfg)
        self.img = StreamWeights(cfg)

    def _qkv(self, s: StreamWeights, x: torch.Tensor, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = s.norm1(x) * (1 + scale[:, None])
        q, k, v = s.qkv(h).unflatten(-1, (3, self.heads, -1)).permute(2, 0, 3, 1, 4)  # 3 x [B, H, L, Dh]
        return s.q_norm(q), s.k_norm(k), v

    def forward(
        self,
        txt: torch.Tensor,
        img: torch.Tensor,
        c: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor],
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        t_mod = self.txt.modulation(F.silu(c)).chunk(4, dim=-1)
        i_mod = self.img.modulation(F.silu(c)).chunk(4, dim=-1)
        tq, tk, tv = self._qkv(self.txt, txt, t_mod[0])
        iq, ik, iv = self._qkv(self.img, img, i_mod[0])
        cos, sin = rope
        q = apply_rope(torch.cat([tq, iq], dim=2), cos, sin)
        k = apply_rope(torch.cat([tk, ik], dim=2), cos, sin)
        attn = F.scaled_dot_product_attention(q, k, torch.cat([tv, iv], dim=2), attn_mask=mask)
        attn = attn.transpose(1, 2).flatten(2)
        n_txt = txt.shape[1]
        txt = txt + t_mod[1][:, None] * self.txt.out(attn[:, :n_txt])
        img = img + i_mod[1][:, None] * self.img.out(attn[:, n_txt:])
        txt = txt + t_mod[3][:, None] * self.txt.mlp(self.txt.norm2(txt) * (1 + t_mod[2][:, None]))
        img = img + i_mod[3][:, None] * self.img.mlp(self.img.norm2(img) * (1 + i_mod[2][:, None]))
        return txt, img


def timestep_embedding(t: torch.Tensor, dim: int = 256, max_period: float = 10_000.0) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000, as DiT-style models do)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class MMDiT(nn.Module):
    """Predicts the flow-matching velocity of the target latent tokens."""

    def __init__(self, cfg: ModelConfig, in_channels: int, cond_dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_channels = in_channels
        self.cond_dim = cond_dim
        d = cfg.hidden
        self.img_in = nn.Linear(in_channels, d)
        self.txt_norm = nn.RMSNorm(cond_dim, eps=1e-6)
        self.txt_in = nn.Linear(cond_dim, d)
        self.time_in = nn.Sequential(nn.Linear(256, d), nn.SiLU(), nn.Linear(d, d))
        self.blocks = nn.ModuleList(JointBlock(cfg) for _ in range(cfg.depth))
        self.norm_out = nn.RMSNorm(d, elementwise_affine=False, eps=1e-6)
        self.mod_out = nn.Linear(d, d)
        self.proj_out = nn.Linear(d, in_channels)
        self.rope = MSRoPE(cfg.head_dim, cfg.rope_theta)
        for layer in (self.mod_out, self.proj_out):
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)

    def forward(
        self,
        x: torch.Tensor,
        t: torch.Tensor,
        cond: torch.Tensor,
        cond_mask: torch.Tensor,
        grid: Grid,
        source: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: noisy target tokens [B, N, C]; t: [B]; cond: [B, T, cond_dim]; cond_mask: [B, T] bool;
        source: clean source-image tokens [B, N, C] for edits (same grid). Returns velocity [B, N, C]."""
        if x.shape[1] != grid.tokens:
            raise ValueError(f"x has {x.shape[1]} tokens, grid {grid} has {grid.tokens}")
        n_target = x.shape[1]
        img = x if source is None else torch.cat([x, source], dim=1)
        img = self.img_in(img)
        txt = self.txt_in(self.txt_norm(cond))
        c = self.time_in(timestep_embedding(t, 256).to(img.dtype))
        positions = [text_positions(txt.shape[1], grid.height, grid.width), image_positions(grid.height, grid.width)]
        if source is not None:
            positions.append(image_positions(grid.height, grid.width, frame=1))
        rope = self.rope(torch.cat(positions).to(x.device))
        mask = None
        if not bool(cond_mask.all()):
            keep = torch.cat([cond_mask, torch.ones(img.shape[:2], dtype=torch.bool, device=x.device)], dim=1)
            mask = keep[:, None, None, :]
        for block in self.blocks:
            txt, img = block(txt, img, c, rope, mask)
        out = self.norm_out(img[:, :n_target]) * (1 + self.mod_out(F.silu(c))[:, None])
        return self.proj_out(out)


def build_mmdit(cfg: ModelConfig, in_channels: int, cond_dim: int) -> MMDiT:
    return MMDiT(cfg, in_channels, cond_dim)
