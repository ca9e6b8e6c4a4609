"""The structured caption: a JSON schema, a parser that finds JSON in model output, and the repair prompt.

Qwen-Image's annotator emits JSON metadata (object attributes, spatial relations, visible text,
image type, style, watermark, anomalies). Models wrap JSON in prose or code fences, truncate
it, or invent keys, so output is parsed leniently (first balanced object), validated strictly
(jsonschema, no extra keys), and a failure gets exactly one repair request that quotes the
validation error. Every field admits null: a backend that cannot know a field (OCR for style)
must say null rather than guess.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema

_NULLABLE_STR = {"type": ["string", "null"]}

STRUCTURED_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image_type", "style", "entities", "relations", "visible_text", "watermark", "anomalies"],
    "properties": {
        "image_type": _NULLABLE_STR,
        "style": _NULLABLE_STR,
        "entities": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["name"],
                "properties": {
                    "name": {"type": "string"},
                    "attributes": {"type": "array", "items": {"type": "string"}},
                },
            },
        },
        "relations": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["subject", "predicate", "object"],
                "properties": {
                    "subject": {"type": "string"},
                    "predicate": {"type": "string"},
                    "object": {"type": "string"},
                },
            },
        },
        "visible_text": {
            "type": ["array", "null"],
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["text"],
                "properties": {
                    "text": {"type": "string"},
                    "script": _NULLABLE_STR,
                    "lang": _NULLABLE_STR,
                    "box": {"type": ["array", "null"], "items": {"type": "integer"}, "minItems": 4, "maxItems": 4},
                    "height_px": {"type": ["integer", "null"]},
                },
            },
        },
        "watermark": {"type": ["boolean", "null"]},
        "anomalies": {"type": ["array", "null"], "items": {"type": "string"}},
    },
}

_VALIDATOR = jsonschema.Draft202012Validator(STRUCTURED_SCHEMA)


@dataclass(frozen=True)
class Parsed:
    value: dict[str, Any] | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.value is not None


def first_json_object(text: str) -> str | None:
    """The first balanced {...} in `text` (strings and escapes respected), or None."""
    start = text.find("{")
    while start != -1:
        depth, in_str, escaped = 0, False, False
        for i in range(start, len(text)):
            ch = text[i]
            if in_str:
                if escaped:
                    escaped = False
                elif ch == "\\":
                    escaped = True
                elif ch == '"':
                    in_str = False
            elif ch == '"':
                in_str = True
            elif ch == "{":
                depth += 1
            elif ch == "}":
                depth -= 1
                if depth == 0:
                    return text[start : i + 1]
        start = text.find("{", start + 1)
    return None


def parse_structured(text: str) -> Parsed:
    """Parse and validate model output; the error names the first problem in words a model can act on."""
    candidate = first_json_object(text or "")
    if candidate is None:
        return Parsed(None, "no JSON object found in the output")
    try:
        value = json.loads(candidate)
    except json.JSONDecodeError as exc:
        return Parsed(None, f"invalid JSON: {exc.msg} at character {exc.pos}")
    error = next(iter(sorted(_VALIDATOR.iter_errors(value), key=lambda e: list(e.path))), None)
    if error is not None:
        where = "/".join(str(p) for p in error.path) or "top level"
        return Parsed(None, f"schema violation at {where}: {error.message[:200]}")
    return Parsed(value, None)


def dumps(value: dict[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def repair_prompt(previous: str, error: str) -> str:
    return (
        "Your previous answer was not valid for the required JSON schema.\n"
        f"Problem: {error}\n"
        f"Previous answer (truncated): {previous[:1500]}\n"
        "Answer again with only one JSON object that follows this schema exactly; use null for anything "
        f"you cannot see:\n{json.dumps(STRUCTURED_SCHEMA, separators=(',', ':'))}"
    )


def from_ocr(lines: list[dict[str, Any]], script: str | None, lang: str | None) -> dict[str, Any]:
    """The structured caption OCR can vouch for: visible text only; everything it cannot know is null."""
    visible = [
        {
            "text": ln["text"],
            "script": script,
            "lang": lang,
            "box": [ln["x"], ln["y"], ln["w"], ln["h"]],
            "height_px": ln["h"],
        }
        for ln in lines
    ]
    return {
        "image_type": None,
        "style": None,
        "entities": None,
        "relations": None,
        "visible_text": visible,
        "watermark": None,
        "anomalies": None,
    }
