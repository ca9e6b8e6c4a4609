"""Text caption: dense visible text and its layout (OCR can produce it offline)."""

from __future__ import annotations

from captioners.types.base import CaptionType

TEXT = CaptionType(
    "text",
    "Transcribe all visible text in this image exactly, line by line in reading order. After each line, say "
    "where it is (top/middle/bottom, left/center/right) and its relative size. Say 'no text' if there is none.",
    "dense visible text with its layout (lines in reading order, position, size)",
    check_language=False,  # text captions transcribe whatever language is shown
    ocr=True,
    max_tokens=1024,
    max_new_tokens=256,
)
