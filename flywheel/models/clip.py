"""open_clip from local files, loaded one way for every part that needs CLIP.

Three parts embed with CLIP: the `clip` filter (image-caption cosine), the aesthetics filter's LAION path
(CLIP ViT-L/14 image embeddings) and the retrieval engine's CLIP space (text queries find images). They
share the loading rules kept here, in the core, so that the retrieval engine (and a dashboard, which may
import only the core) never imports a filter:

- weights are never fetched: the checkpoint is passed as an absolute path, so neither a pretrained tag nor a
  hub schema can trigger a download, and HF_HUB_OFFLINE=1 is set (unless already set); architectures whose
  text tower or tokenizer come from Hugging Face need those files in the local HF cache already;
- a custom architecture comes from an open_clip model JSON, registered with `open_clip.add_model_config`;
  its name is the file's stem, as in open_clip's own registry;
- the eval crop (`clip_view`) reproduces torchvision's arithmetic on uint8, so a decode task can prepare the
  exact tensor open_clip's own `preprocess` would give, long before any model is loaded.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from flywheel.errors import UserError

log = logging.getLogger(__name__)

DEFAULT_IMAGE_SIZE = 224


class ClipConfigError(UserError):
    """The configured CLIP architecture or checkpoint cannot be used; the message names the setting."""


def open_clip_config_dir() -> Path | None:
    """Folder of the model JSONs open_clip ships, found without importing it (and torch)."""
    spec = importlib.util.find_spec("open_clip")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "model_configs"


def model_image_size(model: str, model_config: str | None = None) -> int:
    """The square input size of a CLIP architecture, read from its JSON (no weights, no torch).

    Decode tasks prepare crops long before any model is loaded, so the crop size has to come from the config
    alone. Unknown built-in names fall back to 224; loading then fails on the name itself.
    """
    if model_config is not None:
        path = Path(model_config).expanduser()
    else:
        config_dir = open_clip_config_dir()
        if config_dir is None:
            return DEFAULT_IMAGE_SIZE
        path = config_dir / f"{model}.json"
        if not path.is_file():
            return DEFAULT_IMAGE_SIZE
    cfg = json.loads(path.read_text())
    size = cfg.get("vision_cfg", {}).get("image_size", DEFAULT_IMAGE_SIZE)
    if isinstance(size, list | tuple):
        if len(size) != 2 or size[0] != size[1]:
            raise UserError(f"{path}: non-square image_size {size} is not supported")
        size = size[0]
    return int(size)


def clip_view(rgb: np.ndarray, size: int) -> np.ndarray:
    """open_clip's eval geometry on uint8: Resize(size, bicubic) on the shorter side, CenterCrop(size).

    Sizes and offsets follow torchvision (`int()` for the long side, `round()` for the crop offset) so the
    pixels equal those of open_clip's `preprocess` on the same PIL image.
    """
    img = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_long = max(1, int(size * long / short))
    new_w, new_h = (size, new_long) if w <= h else (new_long, size)
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), resample=Image.Resampling.BICUBIC)
    top = round((new_h - size) / 2.0)
    left = round((new_w - size) / 2.0)
    img = img.crop((left, top, left + size, top + size))
    return np.asarray(img, dtype=np.uint8)


@dataclass
class LoadedClip:
    """A loaded open_clip model with what inference needs: tokenizer, normalisation, device."""

    name: str
    model: Any
    tokenizer: Any
    preprocess: Any
    mean: Any  # torch tensor (1, 3, 1, 1) on `device`
    std: Any
    device: str

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, tuple | list) else size)

    @property
    def embed_dim(self) -> int:
        return int(self.model.visual.output_dim)

    def pixels(self, crops: np.ndarray) -> Any:
        """Normalised (n, 3, s, s) tensor on the device from uint8 (n, s, s, 3) `clip_view` crops."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(crops)).to(self.device)
        return (x.permute(0, 3, 1, 2).float() / 255.0 - self.mean) / self.std

    def encode_images(self, crops: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """L2-normalised image embeddings (n, embed_dim) of uint8 `clip_view` crops."""
        import torch
        import torch.nn.functional as F

        out = []
        for start in range(0, len(crops), batch_size):
            with torch.inference_mode():
                feats = self.model.encode_image(self.pixels(crops[start : start + batch_size]))
            out.append(F.normalize(feats.float(), dim=-1).cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.embed_dim), dtype=np.float32)

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """L2-normalised text embeddings (n, d)."""
        import torch
        import torch.nn.functional as F

        tokens = self.tokenizer(list(texts)).to(self.device)
        with torch.inference_mode():
            return F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()


def check_clip_files(model: str, checkpoint: str | None, model_config: str | None, key: str) -> str | None:
    """None when the configured files can be loaded; else one line naming the `key.*` setting to fix."""
    if model.startswith(("hf-hub:", "local-dir:")):
        return (
            f"{key}.model={model!r} names a hub/dir schema; set it to an architecture name (or {key}.model_config "
            f"to its JSON) and {key}.checkpoint to a local weights file"
        )
    if checkpoint is None:
        return f"no weights configured: set {key}.checkpoint to a local open_clip checkpoint"
    if not Path(checkpoint).expanduser().is_file():
        return f"{key}.checkpoint={checkpoint!r} is not a file; set it to a local open_clip checkpoint"
    if model_config is not None and not Path(model_config).expanduser().is_file():
        return f"{key}.model_config={model_config!r} is not a file; set it to an open_clip model JSON (or unset it)"
    return None


def load_clip(
    model: str,
    checkpoint: str,
    model_config: str | None = None,
    device: str = "auto",
    threads: int | None = None,
    key: str = "clip",
    model_key: str = "model",
) -> LoadedClip:
    """Load open_clip `model` (or the architecture in `model_config`) with local `checkpoint` weights.

    Raises ClipConfigError naming `key.*` when a file is missing, the JSON is not an open_clip config or the
    checkpoint does not fit the architecture.
    """
    name = Path(model_config).stem if model_config else model
    problem = check_clip_files(name, checkpoint, model_config, key)
    if problem is not None:
        raise ClipConfigError(problem)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing below may reach a hub; if something tries, it fails
    import open_clip
    import torch

    if model_config is not None:
        config_path = Path(model_config).expanduser().resolve()
        if open_clip.get_model_config(name) != json.loads(config_path.read_text()):
            open_clip.add_model_config(config_path)
        if name not in open_clip.list_models():
            raise ClipConfigError(
                f"{key}.model_config={model_config!r} is not an open_clip model config "
                "(needs embed_dim, vision_cfg and text_cfg)"
            )
    elif name not in open_clip.list_models():
        raise ClipConfigError(f"{key}.{model_key}={name!r} is not an open_clip architecture")
    if threads is not None:
        torch.set_num_threads(threads)
    use_cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if device == "cuda" and not use_cuda:
        log.warning("%s.device=cuda but torch sees no CUDA device; running on CPU", key)
    torch_device = "cuda" if use_cuda else "cpu"
    # An absolute path can never be mistaken for a pretrained tag (which would download).
    weights = str(Path(checkpoint).expanduser().resolve())
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(name, pretrained=weights, device=torch_device)
    except Exception as exc:  # a checkpoint that does not fit the architecture: the user's file
        raise ClipConfigError(f"{key}.checkpoint={checkpoint!r} does not load into {name}: {exc}") from exc
    net.eval()
    pre = open_clip.get_model_preprocess_cfg(net)
    return LoadedClip(
        name=name,
        model=net,
        tokenizer=open_clip.get_tokenizer(name),
        preprocess=preprocess,
        mean=torch.tensor(pre["mean"], device=torch_device).view(1, 3, 1, 1),
        std=torch.tensor(pre["std"], device=torch_device).view(1, 3, 1, 1),
        device=torch_device,
    )
