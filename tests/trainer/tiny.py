"""The tiny CPU stage used by the trainer tests: 32 px, patch 4 (64 tokens), 0.3M parameters."""

from __future__ import annotations

from typing import Any

from trainer.config import StageConfig


def tiny_stage(name: str = "test_tiny", **sections: Any) -> StageConfig:
    base: dict[str, Any] = {
        "name": name,
        "data": {
            "recipes": ["stage1_256p"],
            "resolutions": [32],
            "aspect_ratios": [1.0],
            "batch_size": 4,
            "t2i_ratio": 0.7,
            "uncond_dropout": 0.1,
        },
        "latents": {"patch_size": 4},
        "optim": {"lr": 3e-3},
        "train": {"steps": 60, "log_every": 1000, "checkpoint_every": 1000, "ema_decay": 0.9, "seed": 0},
    }
    for key, value in sections.items():
        base[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return StageConfig.from_dict(base)
