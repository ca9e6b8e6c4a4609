"""Condition encoders: frozen models that turn a prompt (and, for edits, the source image) into token features.

Why pluggable: the seeds condition on Qwen2.5-VL / Qwen3-VL hidden states, which need weights a user must bring;
the offline default is MiniLM token features (`flywheel.models.text_encoder`). Both return per-token features
and a mask, which is all the MMDiT's text stream needs. MiniLM is text-only, so for edits it encodes only the
instruction: the source image still reaches the model through the latent stream (reconstructive path), and the
semantic path needs a VLM (`encoder.kind: vlm`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image

from flywheel.config import ConfigError
from trainer.config import EncoderConfig


class MiniLMCondition:
    def __init__(self, device: str, path: str | None = None) -> None:
        from flywheel.models.text_encoder import MiniLMEncoder

        self.encoder = MiniLMEncoder.load(device=device, path=path)
        self.dim = self.encoder.dim
        self.name = f"minilm:{self.encoder.name}"

    def encode(
        self, texts: Sequence[str], images: Sequence[Image.Image] | None, max_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        hidden, mask = self.encoder.token_features(list(texts), max_length=max_tokens)
        return hidden.float(), mask


class VLMCondition:
    """Last (or `layer`) hidden states of a transformers image-text-to-text model loaded from a local folder.

    Edits pass the source image through the processor's chat template, so the encoder sees it (semantic path).
    """

    def __init__(self, cfg: EncoderConfig, device: str) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        folder = Path(cfg.path or "")
        if not (folder / "config.json").is_file():
            raise ConfigError(
                f"encoder.path {folder} has no config.json: save the VLM with save_pretrained "
                "(model and processor) into that folder"
            )
        self.processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        self.model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True).eval().to(device)
        self.model.requires_grad_(False)
        self.device = device
        self.layer = cfg.layer
        text_cfg = getattr(self.model.config, "text_config", self.model.config)
        self.dim = int(text_cfg.hidden_size)
        self.name = f"vlm:{folder.name}"

    def _prompt(self, text: str, with_image: bool) -> str:
        content: list[dict[str, str]] = [{"type": "image"}] if with_image else []
        content.append({"type": "text", "text": text})
        return self.processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)

    @torch.no_grad()
    def encode(
        self, texts: Sequence[str], images: Sequence[Image.Image] | None, max_tokens: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        prompts = [self._prompt(t, images is not None) for t in texts]
        kwargs: dict[str, object] = {"text": prompts, "padding": True, "return_tensors": "pt"}
        if images is not None:
            kwargs["images"] = list(images)
        inputs = self.processor(**kwargs).to(self.device)
        out = self.model(**inputs, output_hidden_states=True)
        hidden = out.hidden_states[self.layer].float()
        mask = inputs["attention_mask"].bool()
        # No truncation: cutting a chat template would cut image tokens or the prompt itself; max_tokens bounds
        # only the MiniLM path, VLM prompts are bounded by the evaluation/caption lengths upstream.
        return hidden, mask


def build_encoder(cfg: EncoderConfig, device: str) -> MiniLMCondition | VLMCondition:
    if cfg.kind == "minilm":
        return MiniLMCondition(device, cfg.path)
    return VLMCondition(cfg, device)
