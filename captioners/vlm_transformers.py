"""A local image-text-to-text model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL, ...) through transformers, batched.

Loaded from a local folder with `AutoModelForImageTextToText` + `AutoProcessor` (safetensors;
no remote code), bf16 on GPU, left padding so a batch generates together. Greedy decoding:
captions of a curation run must be reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from captioners.config import TransformersConfig
from captioners.vlm import VlmReply, VlmRequest, png_to_image
from flywheel.config import ConfigError


def resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class TransformersVlm:
    """Generates captions for batches of (image, prompt) with one model copy."""

    def __init__(self, cfg: TransformersConfig) -> None:
        import torch
        from transformers import AutoModelForImageTextToText, AutoProcessor

        if not cfg.model_path:
            raise ConfigError("transformers.model_path is not set: point it at a local checkpoint folder")
        path = Path(cfg.model_path).expanduser()
        if not (path / "config.json").is_file():
            raise ConfigError(f"transformers.model_path {path} has no config.json: not a transformers checkpoint")
        self.cfg = cfg
        self.device = resolve_device(cfg.device)
        dtype = {
            "auto": torch.bfloat16 if self.device.startswith("cuda") else torch.float32,
            "bfloat16": torch.bfloat16,
            "float16": torch.float16,
            "float32": torch.float32,
        }.get(cfg.dtype)
        if dtype is None:
            raise ConfigError(f"transformers.dtype {cfg.dtype!r}: use auto, bfloat16, float16 or float32")
        self.processor: Any = AutoProcessor.from_pretrained(str(path))
        self.processor.tokenizer.padding_side = "left"
        self.model: Any = AutoModelForImageTextToText.from_pretrained(str(path), dtype=dtype).to(self.device).eval()
        self.name = f"transformers:{path.name}"

    def generate(self, requests: Sequence[VlmRequest]) -> list[VlmReply]:
        replies: list[VlmReply] = []
        size = max(1, self.cfg.batch_size)
        for start in range(0, len(requests), size):
            replies.extend(self._batch(requests[start : start + size]))
        return replies

    def _batch(self, batch: Sequence[VlmRequest]) -> list[VlmReply]:
        import torch

        texts = [
            self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r.prompt}]}],
                add_generation_prompt=True,
                tokenize=False,
            )
            for r in batch
        ]
        images = [png_to_image(r.image_png) for r in batch]
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt").to(self.device)
        budget = max(r.max_new_tokens for r in batch)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=budget, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1] :]
        pad = self.processor.tokenizer.pad_token_id
        eos = self.model.generation_config.eos_token_id
        stop = set(eos if isinstance(eos, list) else [eos]) | {pad}
        replies = []
        for row, req in zip(new.tolist(), batch, strict=True):
            row = row[: req.max_new_tokens]
            n = next((i for i, t in enumerate(row) if t in stop), len(row))
            text = self.processor.tokenizer.decode(row[:n], skip_special_tokens=True)
            replies.append(VlmReply(text=text.strip(), output_tokens=n))
        return replies
