"""The four caption types of the Qwen-Image annotation framework, as typed definitions.

Each type names its instruction prompt and how its output is judged; the prompts follow the
report's wording: general (comprehensive, text included), text (dense visible text and its
layout), knowledge (background and context), structured (entities, attributes, relations,
plus Qwen-Image's visible text, image type, style, watermark and anomalies, as JSON).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from captioners.structured import STRUCTURED_SCHEMA
from flywheel.errors import UserError


@dataclass(frozen=True)
class CaptionType:
    name: str
    prompt: str
    is_json: bool = False
    check_language: bool = True  # text captions transcribe whatever language is shown


GENERAL = CaptionType(
    "general",
    "Describe this image comprehensively in one paragraph: the subjects, their attributes and positions, "
    "the setting, colours, lighting, composition and style. Transcribe any visible text exactly, in quotes. "
    "Do not guess names or facts that are not visible.",
)
TEXT = CaptionType(
    "text",
    "Transcribe all visible text in this image exactly, line by line in reading order. After each line, say "
    "where it is (top/middle/bottom, left/center/right) and its relative size. Say 'no text' if there is none.",
    check_language=False,
)
KNOWLEDGE = CaptionType(
    "knowledge",
    "Describe the background knowledge and context of this image: what kind of place, object, event or "
    "artwork it shows, its cultural or historical context, and what a viewer would need to know to understand "
    "it. Only state what the image supports.",
)
STRUCTURED = CaptionType(
    "structured",
    "Describe this image as one JSON object with exactly these keys: image_type, style, entities (name and "
    "attributes), relations (subject, predicate, object), visible_text (text, script, lang, box [x,y,w,h], "
    "height_px), watermark (true/false), anomalies (list). Use null for anything you cannot see. Output only "
    f"the JSON. Schema: {json.dumps(STRUCTURED_SCHEMA, separators=(',', ':'))}",
    is_json=True,
)

TYPES: dict[str, CaptionType] = {t.name: t for t in (GENERAL, TEXT, KNOWLEDGE, STRUCTURED)}


def parse_types(spec: str | None) -> tuple[str, ...]:
    """`general,text` -> ("general", "text"); None -> all four. Unknown names are a clear error."""
    if not spec:
        return tuple(TYPES)
    names = tuple(dict.fromkeys(s.strip() for s in spec.split(",") if s.strip()))
    unknown = [n for n in names if n not in TYPES]
    if unknown or not names:
        raise UserError(f"unknown caption type(s) {unknown or [spec]}; known: {', '.join(TYPES)}")
    return names
