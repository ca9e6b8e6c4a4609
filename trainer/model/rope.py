"""MSRoPE: multimodal scalable rotary positions (Qwen-Image), with a frame axis for edit sources.

Why this layout: image tokens get 2-D (row, column) positions centred on the grid, so a model trained at 256 px
sees the same relative geometry at 512 px; text tokens sit on the diagonal (the same id on every axis), which
makes RoPE on text equivalent to 1-D RoPE and keeps text positions disjoint from any image position. The third
axis, `frame`, separates the edit's source image (frame 1) from the target (frame 0), as Qwen-Image extends
MSRoPE "by introducing an additional frame dimension".
"""

from __future__ import annotations

import torch


def axes_dims(head_dim: int) -> tuple[int, int, int]:
    """Split the rotary half-dimensions over (frame, row, column); each axis gets an even width."""
    frame = 2 * max(1, head_dim // 8)
    rest = head_dim - frame
    row = (rest // 2) // 2 * 2
    return frame, row, rest - row


def image_positions(height: int, width: int, frame: int = 0) -> torch.Tensor:
    """[height*width, 3] (frame, row, col) positions, centred on the grid."""
    rows = torch.arange(height, dtype=torch.float32) - height // 2
    cols = torch.arange(width, dtype=torch.float32) - width // 2
    grid_r, grid_c = torch.meshgrid(rows, cols, indexing="ij")
    frames = torch.full_like(grid_r, float(frame))
    return torch.stack([frames, grid_r, grid_c], dim=-1).reshape(-1, 3)


def text_positions(length: int, height: int, width: int) -> torch.Tensor:
    """[length, 3]: text on the diagonal, starting past the largest image coordinate."""
    start = max(height, width) // 2 + 1
    ids = torch.arange(length, dtype=torch.float32) + start
    return ids[:, None].expand(length, 3).clone()


class MSRoPE(torch.nn.Module):
    def __init__(self, head_dim: int, theta: float = 10_000.0) -> None:
        super().__init__()
        self.dims = axes_dims(head_dim)
        for i, dim in enumerate(self.dims):
            inv = 1.0 / theta ** (torch.arange(0, dim, 2, dtype=torch.float32) / dim)
            self.register_buffer(f"inv_freq_{i}", inv, persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """cos, sin of shape [L, head_dim/2] for positions [L, 3]."""
        angles = torch.cat(
            [positions[:, i : i + 1].float() * getattr(self, f"inv_freq_{i}")[None] for i in range(3)], dim=-1
        )
        return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[2i], x[2i+1]) of x [B, H, L, D] by the angles in cos/sin [L, D/2]."""
    pairs = x.float().unflatten(-1, (-1, 2))
    x0, x1 = pairs[..., 0], pairs[..., 1]
    out = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)
    return out.flatten(-2).to(x.dtype)
