"""Generation from a checkpoint: T2I and edits with the Euler flow sampler and classifier-free guidance.

The unconditional branch is the empty prompt, which is exactly what unconditional dropout trained (captions
replaced by ""). For edits the source image stays in both branches (its latent tokens at MSRoPE frame 1), so
guidance pushes towards the instruction, not away from the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image

from flywheel.errors import UserError
from trainer.checkpoint import Checkpoint, load_checkpoint
from trainer.config import StageConfig
from trainer.encoders import MiniLMCondition, VLMCondition
from trainer.flow import euler_sample
from trainer.runtime import Parts, build_parts, from_pil, to_pil


class GenerateError(UserError):
    pass


@dataclass
class Pipeline:
    parts: Parts
    checkpoint: Checkpoint
    weights: str

    @property
    def default_size(self) -> tuple[int, int]:
        res = self.parts.cfg.data.resolutions[0]
        return res, res

    @torch.no_grad()
    def generate(
        self,
        prompts: Sequence[str],
        seeds: Sequence[int],
        *,
        size: tuple[int, int] | None = None,
        steps: int = 20,
        guidance: float = 4.0,
        sources: Sequence[Image.Image] | None = None,
    ) -> list[Image.Image]:
        """One image per (prompt, seed) pair; `sources` (one per prompt) makes them edits."""
        if len(prompts) != len(seeds):
            raise GenerateError(f"{len(prompts)} prompts but {len(seeds)} seeds")
        if sources is not None and len(sources) != len(prompts):
            raise GenerateError(f"{len(prompts)} prompts but {len(sources)} source images")
        w, h = size or self.default_size
        stride = self.parts.latents.downsample
        if w % stride or h % stride:
            raise GenerateError(f"size {w}x{h} must be a multiple of {stride} (the latent stride)")
        lat, model, dev = self.parts.latents, self.parts.model, self.parts.device
        src_pixels = from_pil(sources, (w, h)).to(dev) if sources is not None else None
        src_tokens = lat.encode(src_pixels)[0] if src_pixels is not None else None
        cond, mask = self.parts.condition(prompts, src_pixels)
        ucond, umask = self.parts.condition([""] * len(prompts), src_pixels)
        probe, grid = lat.encode(torch.zeros(1, 3, h, w, device=dev))
        noise = torch.cat([torch.randn(probe.shape, generator=torch.Generator().manual_seed(int(s))) for s in seeds])
        noise = noise.to(dev)

        def velocity(c: torch.Tensor, m: torch.Tensor):  # a closure over one CFG branch's condition
            return lambda x, t: model(x, t, c, m, grid, src_tokens).float()

        model.eval()
        tokens = euler_sample(
            velocity(cond, mask), velocity(ucond, umask), noise, steps, guidance, self.parts.cfg.train.time_shift
        )
        return to_pil(lat.decode(tokens, grid))


def load_pipeline(
    path: Path,
    *,
    weights: str = "ema",
    device: str | None = None,
    encoder: MiniLMCondition | VLMCondition | None = None,
) -> Pipeline:
    """Rebuild the stage's model from the checkpoint's recorded config and load its (EMA) weights."""
    if weights not in ("ema", "model"):
        raise GenerateError(f"weights must be ema or model, got {weights!r}")
    ckpt = load_checkpoint(path, with_optimizer=False)
    cfg = StageConfig.from_dict(ckpt.state["config"], where=f"{path}/state.json")
    parts = build_parts(cfg, encoder=encoder, device=device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if parts.encoder.dim != ckpt.state["cond_dim"]:
        raise GenerateError(
            f"{path} was trained with a {ckpt.state['cond_dim']}-d condition encoder "
            f"({ckpt.state['encoder']}), this encoder gives {parts.encoder.dim}"
        )
    parts.model.load_state_dict(ckpt.ema if weights == "ema" else ckpt.model)
    parts.model.eval()
    return Pipeline(parts=parts, checkpoint=ckpt, weights=weights)
