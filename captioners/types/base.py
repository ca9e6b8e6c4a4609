"""What a caption type is: one object carrying every setting that differs by type, so the config defaults,
the backends' capabilities, the caption columns and the post-checks all read it instead of naming types."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaptionType:
    name: str
    prompt: str  # the VLM instruction
    description: str  # what the caption holds; becomes the caption_<name> column's description
    is_json: bool = False  # output must parse as JSON (one repair retry), column unit "json"
    check_language: bool = True  # post-check: the caption is in checks.language (text transcribes any language)
    ocr: bool = False  # OCR can produce it, so a run asking for it reads OCR (and its default backend is ocr)
    max_tokens: int = 512  # post-check: longer captions are flagged too_long (checks.max_tokens default)
    max_new_tokens: int = 256  # VLM generation budget (generation.max_new_tokens default)

    @property
    def default_backend(self) -> str | None:
        """The offline default: OCR where it can produce the type, else none (reported as not produced)."""
        return "ocr" if self.ocr else None

    @property
    def compare_ocr(self) -> bool:
        """Quoted text of a free-text VLM caption is checked against what OCR saw (unseen_text)."""
        return not self.is_json
