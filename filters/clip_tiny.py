"""A tiny random-weight open_clip model, written to disk like a real custom checkpoint.

Why: the CLIP path (custom config registration, safetensors loading, tokenization,
preprocessing, cosine) must be testable and smoke-testable without network access or a
600 MB download. The scores of this model are meaningless; only the plumbing is real.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

TINY_MODEL_NAME = "flywheel-tiny-clip"


def tiny_clip_config(image_size: int = 64) -> dict[str, Any]:
    """open_clip model config of a 2-layer ViT / 2-layer text transformer (~3.5M params, mostly
    the 49408-token embedding; the vocab must match open_clip's bundled BPE tokenizer)."""
    return {
        "embed_dim": 32,
        "vision_cfg": {"image_size": image_size, "layers": 2, "width": 64, "patch_size": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 64, "heads": 2, "layers": 2},
    }


def register_model_config(config_path: Path) -> str:
    """Make open_clip know the architecture in `config_path`; returns its model name (the file stem)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip

    cfg = json.loads(config_path.read_text())
    if open_clip.get_model_config(config_path.stem) != cfg:
        open_clip.add_model_config(config_path)
    return config_path.stem


def write_random_checkpoint(model_name: str, checkpoint_path: Path, seed: int = 0) -> Path:
    """Instantiate open_clip architecture `model_name` with random weights and save it as safetensors.

    Used for the tiny model here and by bench/model_cost.py for architecture-only timing
    (e.g. "ViT-B-32"). The global torch RNG is forked so callers' seeds are not disturbed.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import open_clip
    import torch
    from safetensors.torch import save_file

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = open_clip.create_model(model_name, pretrained=None)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    checkpoint_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(checkpoint_path))
    return checkpoint_path


def build_tiny_clip(out_dir: str | Path, image_size: int = 64, seed: int = 0) -> tuple[Path, Path]:
    """Write `<out_dir>/flywheel-tiny-clip.json` and a random-weight `.safetensors` checkpoint.

    Returns (config_path, checkpoint_path). Point ClipConfig at them with
    `ClipConfig(model="flywheel-tiny-clip", model_config=str(config_path), checkpoint=str(checkpoint_path))`;
    the scorer takes the model name from the config file name and the crop size from its
    `vision_cfg.image_size`.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    config_path = out / f"{TINY_MODEL_NAME}.json"
    config_path.write_text(json.dumps(tiny_clip_config(image_size), indent=2) + "\n")
    name = register_model_config(config_path)
    checkpoint_path = write_random_checkpoint(name, out / f"{TINY_MODEL_NAME}.safetensors", seed=seed)
    return config_path, checkpoint_path
