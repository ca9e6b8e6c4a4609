"""What a VLM backend is asked and answers: shared by the transformers and the OpenAI-compatible backends."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from PIL import Image


@dataclass(frozen=True)
class VlmRequest:
    """One image + instruction. The image is PNG bytes already bounded in size, so a request is hashable."""

    image_png: bytes
    prompt: str
    max_new_tokens: int

    def key(self, model: str, temperature: float) -> str:
        """Cache key: everything that changes the answer (model, sampling, prompt, budget, exact pixels)."""
        h = hashlib.sha256()
        for part in (model, repr(temperature), str(self.max_new_tokens), self.prompt):
            h.update(part.encode("utf-8") + b"\x00")
        h.update(hashlib.sha256(self.image_png).digest())
        return h.hexdigest()


@dataclass(frozen=True)
class VlmReply:
    text: str | None
    output_tokens: int = 0
    error: str | None = None
    cached: bool = False


class VlmBackend(Protocol):
    name: str

    def generate(self, requests: Sequence[VlmRequest]) -> list[VlmReply]:
        """Answer every request, in order; a request that could not be answered carries `error`."""
        ...


def bounded_png(image: Image.Image, max_side: int) -> bytes:
    """RGB PNG of `image` with its longer side at most `max_side` (VLM processors resize anyway)."""
    img = image.convert("RGB")
    if max(img.size) > max_side:
        ratio = max_side / max(img.size)
        img = img.resize(
            (max(1, round(img.width * ratio)), max(1, round(img.height * ratio))), Image.Resampling.LANCZOS
        )
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def png_to_image(data: bytes) -> Image.Image:
    img = Image.open(io.BytesIO(data))
    img.load()
    return img.convert("RGB")
