"""Knowledge caption: background knowledge and context the image relates to (needs a VLM)."""

from __future__ import annotations

from captioners.types.base import CaptionType

KNOWLEDGE = CaptionType(
    "knowledge",
    "Describe the background knowledge and context of this image: what kind of place, object, event or "
    "artwork it shows, its cultural or historical context, and what a viewer would need to know to understand "
    "it. Only state what the image supports.",
    "background knowledge and context the image relates to",
    max_tokens=512,
    max_new_tokens=192,
)
