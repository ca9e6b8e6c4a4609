"""Structured caption: Qwen-Image's JSON of entities, relations, visible text, style, watermark, anomalies."""

from __future__ import annotations

import json

from captioners.structured import STRUCTURED_SCHEMA
from captioners.types.base import CaptionType

STRUCTURED = CaptionType(
    "structured",
    "Describe this image as one JSON object with exactly these keys: image_type, style, entities (name and "
    "attributes), relations (subject, predicate, object), visible_text (text, script, lang, box [x,y,w,h], "
    "height_px), watermark (true/false), anomalies (list). Use null for anything you cannot see. Output only "
    f"the JSON. Schema: {json.dumps(STRUCTURED_SCHEMA, separators=(',', ':'))}",
    "JSON: image_type, style, entities, relations, visible_text, watermark, anomalies",
    is_json=True,
    check_language=False,  # JSON keys and transcribed text are not prose in one language
    ocr=True,
    max_tokens=1536,
    max_new_tokens=384,
)
