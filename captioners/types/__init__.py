"""The caption types of the Qwen-Image annotation framework, registered once.

Each type is one file here defining one `CaptionType` (its prompt, description and settings; see
captioners/types/base.py) and one `register(...)` line below; the prompts follow the report's wording:
general (comprehensive, text included), text (dense visible text and its layout), knowledge (background and
context), structured (entities, attributes, relations, plus Qwen-Image's visible text, image type, style,
watermark and anomalies, as JSON). Config defaults, backend capabilities, caption columns and post-checks
read this registry.
"""

from __future__ import annotations

from captioners.types.base import CaptionType
from captioners.types.general import GENERAL
from captioners.types.knowledge import KNOWLEDGE
from captioners.types.structured import STRUCTURED
from captioners.types.text import TEXT
from flywheel.errors import UserError

TYPES: dict[str, CaptionType] = {}


def register(ctype: CaptionType) -> CaptionType:
    if ctype.name in TYPES:
        raise ValueError(f"caption type {ctype.name!r} registered twice")
    TYPES[ctype.name] = ctype
    return ctype


register(GENERAL)
register(TEXT)
register(KNOWLEDGE)
register(STRUCTURED)

CAPTION_TYPES: tuple[str, ...] = tuple(TYPES)  # registration order: the column order of captioned shards


def parse_types(spec: str | None) -> tuple[str, ...]:
    """`general,text` -> ("general", "text"); None -> all. Unknown names are a clear error."""
    if not spec:
        return tuple(TYPES)
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n not in TYPES]
    if unknown or not names:
        raise UserError(f"unknown caption type(s) {unknown or [spec]}; known: {', '.join(TYPES)}")
    return names


def needs_ocr(kinds: tuple[str, ...] | list[str]) -> bool:
    """A run asking for any type OCR can produce reads OCR (for that type, or to check the others' text)."""
    return any(TYPES[k].ocr for k in kinds)


__all__ = ["CAPTION_TYPES", "TYPES", "CaptionType", "needs_ocr", "parse_types", "register"]
