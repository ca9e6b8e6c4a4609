"""The one font catalogue: which Noto files render which script, found once on this machine.

Two parts render text with known content: the demo/labeled corpus (`corpus/text.py`) and `flywheel synth`
(`captioners/synth/`). They keep their own phrases (signs for the corpus; phrases, sentences and menu items for
synthesis) but draw from one list of font files per script (ISO 15924 code), each with the style a caption
names, and one search of the font folders. Files are Debian's fonts-noto-core / fonts-noto-cjk; a face index
picks the region variant inside a CJK collection (0 JP, 1 KR, 2 SC, 3 TC, 4 HK).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

FONT_DIRS: tuple[Path, ...] = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")


@dataclass(frozen=True)
class FontChoice:
    """One font file (and face index inside a .ttc collection) plus how a caption names its style."""

    filename: str
    index: int
    style: str  # words for a caption, e.g. "bold serif"


_LATIN = (
    FontChoice("NotoSans-Regular.ttf", 0, "sans-serif"),
    FontChoice("NotoSans-Bold.ttf", 0, "bold sans-serif"),
    FontChoice("NotoSerif-Regular.ttf", 0, "serif"),
    FontChoice("NotoSerif-Bold.ttf", 0, "bold serif"),
    FontChoice("NotoSerif-Italic.ttf", 0, "italic serif"),
)


def _cjk(index: int) -> tuple[FontChoice, ...]:
    return (
        FontChoice("NotoSansCJK-Regular.ttc", index, "sans-serif"),
        FontChoice("NotoSansCJK-Bold.ttc", index, "bold sans-serif"),
        FontChoice("NotoSerifCJK-Regular.ttc", index, "serif"),
        FontChoice("NotoSerifCJK-Bold.ttc", index, "bold serif"),
    )


def _pair(family: str) -> tuple[FontChoice, ...]:
    return (
        FontChoice(f"NotoSans{family}-Regular.ttf", 0, "sans-serif"),
        FontChoice(f"NotoSans{family}-Bold.ttf", 0, "bold sans-serif"),
        FontChoice(f"NotoSerif{family}-Regular.ttf", 0, "serif"),
        FontChoice(f"NotoSerif{family}-Bold.ttf", 0, "bold serif"),
    )


SCRIPT_FONTS: dict[str, tuple[FontChoice, ...]] = {
    "Latn": _LATIN,
    "Cyrl": _LATIN,
    "Grek": _LATIN,
    "Hans": _cjk(2),
    "Jpan": _cjk(0),
    "Kore": _cjk(1),
    "Arab": (
        FontChoice("NotoSansArabic-Regular.ttf", 0, "sans-serif"),
        FontChoice("NotoSansArabic-Bold.ttf", 0, "bold sans-serif"),
        FontChoice("NotoNaskhArabic-Regular.ttf", 0, "naskh calligraphic"),
        FontChoice("NotoKufiArabic-Bold.ttf", 0, "bold kufi"),
    ),
    "Hebr": _pair("Hebrew"),
    "Deva": _pair("Devanagari"),
    "Thai": _pair("Thai"),
    "Beng": _pair("Bengali"),
    "Taml": _pair("Tamil"),
    "Gujr": _pair("Gujarati"),
}


def script_fonts(code: str, styles: Sequence[str] | None = None) -> tuple[FontChoice, ...]:
    """The catalogue's fonts for script `code`, or only those of `styles`, in that order of preference."""
    fonts = SCRIPT_FONTS[code]
    if styles is None:
        return fonts
    by_style = {f.style: f for f in fonts}
    unknown = [s for s in styles if s not in by_style]
    if unknown:
        raise KeyError(f"script {code} has no font of style(s) {unknown}; known: {sorted(by_style)}")
    return tuple(by_style[s] for s in styles)


@lru_cache(maxsize=4)
def font_index(dirs: tuple[Path, ...] = FONT_DIRS) -> dict[str, Path]:
    """Installed Noto font files by file name (the first found wins), globbed once per set of folders."""
    found: dict[str, Path] = {}
    for root in dirs:
        if root.is_dir():
            for path in sorted(root.rglob("Noto*")):
                if path.suffix.lower() in (".ttf", ".ttc", ".otf"):
                    found.setdefault(path.name, path)
    return found


def installed(fonts: Sequence[FontChoice], dirs: Sequence[Path] = FONT_DIRS) -> list[tuple[Path, FontChoice]]:
    """The fonts of `fonts` present on this machine, in order."""
    index = font_index(tuple(dirs))
    return [(index[f.filename], f) for f in fonts if f.filename in index]
