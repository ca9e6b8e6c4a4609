"""General caption: a comprehensive description, visible text included."""

from __future__ import annotations

from captioners.types.base import CaptionType

GENERAL = CaptionType(
    "general",
    "Describe this image comprehensively in one paragraph: the subjects, their attributes and positions, "
    "the setting, colours, lighting, composition and style. Transcribe any visible text exactly, in quotes. "
    "Do not guess names or facts that are not visible.",
    "comprehensive description of the image, visible text included",
    max_tokens=512,
    max_new_tokens=256,
)
