"""The tiny CPU stage used by the trainer tests: 32 px, patch 4 (64 tokens), 0.3M parameters."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from trainer.config import StageConfig, load_stage


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


def cpu_scaled(stage: str, out: Path, batch_size: int = 2, allow_missing_tasks: bool = False) -> Path:
    """A built-in GPU stage with its data section and recipes kept, and model, sizes and device scaled down so
    one step runs on a CPU; written as YAML to `out` for `flywheel train --stage`."""
    cfg = load_stage(stage).to_dict()
    cfg["model"] = {"preset": "tiny", "hidden": 32, "depth": 1, "heads": 2}
    cfg["data"].update({"resolutions": [32], "aspect_ratios": [1.0], "batch_size": batch_size, "num_workers": 0})
    if allow_missing_tasks:
        cfg["data"]["allow_missing_tasks"] = True
    cfg["latents"] = {"kind": "pixels", "patch_size": 4}
    cfg["train"].update(
        {"steps": 1, "precision": "fp32", "compile": False, "device": "cpu", "checkpoint_every": 1, "log_every": 1}
    )
    out.write_text(yaml.safe_dump(cfg))
    return out
