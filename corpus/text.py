"""Synthetic text images for the demo corpus: known text, rendered with Noto fonts in many scripts.

Text-rendering quality is what the Qwen-Image data work cares most about, so the corpus needs
images whose exact text is known (for OCR / caption-consistency checks) in scripts with very
different shaping needs: Latin/Cyrillic/Greek (none), CJK (none, but big fonts), Arabic
(contextual joining + RTL), Hebrew (RTL), Devanagari (conjuncts, vowel reordering) and Thai
(stacked marks). Complex scripts are only rendered correctly through libraqm, so every label
records which layout engine drew it and whether the shaping can be trusted.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, features

from flywheel.fonts import FONT_DIRS, FontChoice, installed, script_fonts


@dataclass(frozen=True)
class ScriptSpec:
    """A writing system: ISO 15924 code, a language, fonts to try, and phrases known to render."""

    code: str
    lang: str
    fonts: tuple[FontChoice, ...]
    phrases: tuple[str, ...]
    needs_shaping: bool  # wrong without raqm (joining, bidi, reordering or mark stacking)


SCRIPTS: tuple[ScriptSpec, ...] = (
    ScriptSpec(
        "Latn",
        "en",
        script_fonts("Latn"),
        (
            "OPEN DAILY",
            "Fresh Coffee",
            "SUMMER SALE\n50% OFF",
            "Welcome Home",
            "Hello World",
            "Good Morning",
            "Café Müller",
        ),
        False,
    ),
    ScriptSpec(
        "Cyrl", "ru", script_fonts("Cyrl"), ("Добро пожаловать", "Свежий хлеб", "Открыто", "Привет, мир"), False
    ),
    ScriptSpec("Grek", "el", script_fonts("Grek"), ("Καλημέρα", "Καλώς ήρθατε", "Ανοιχτό"), False),
    ScriptSpec("Hans", "zh", script_fonts("Hans"), ("欢迎光临", "新鲜咖啡", "你好，世界", "春节快乐"), False),
    ScriptSpec("Jpan", "ja", script_fonts("Jpan"), ("ようこそ", "こんにちは世界", "東京駅", "営業中"), False),
    ScriptSpec("Kore", "ko", script_fonts("Kore"), ("환영합니다", "안녕하세요", "신선한 커피", "서울역"), False),
    ScriptSpec(
        "Arab",
        "ar",
        script_fonts("Arab"),
        ("مرحبا بالعالم", "أهلا وسهلا", "قهوة طازجة", "مفتوح"),
        True,
    ),
    ScriptSpec("Hebr", "he", script_fonts("Hebr"), ("שלום עולם", "ברוכים הבאים", "קפה טרי"), True),
    ScriptSpec(
        "Deva",
        "hi",
        script_fonts("Deva"),
        ("नमस्ते दुनिया", "स्वागत है", "ताज़ा कॉफ़ी", "शुभ प्रभात"),
        True,
    ),
    ScriptSpec("Thai", "th", script_fonts("Thai"), ("สวัสดีชาวโลก", "ยินดีต้อนรับ", "กาแฟสด"), True),
)

# Named colours so captions can say what is shown; luma decides which pairs are legible.
PALETTE: dict[str, tuple[int, int, int]] = {
    "white": (250, 250, 250),
    "black": (15, 15, 15),
    "cream": (245, 236, 210),
    "light grey": (205, 205, 205),
    "yellow": (250, 210, 40),
    "sky blue": (135, 195, 235),
    "navy": (20, 35, 90),
    "dark red": (130, 20, 25),
    "forest green": (30, 90, 45),
    "purple": (90, 40, 120),
    "orange": (240, 130, 30),
    "charcoal": (55, 55, 60),
}

_warned: set[str] = set()


def layout_engine() -> ImageFont.Layout:
    """RAQM when Pillow was built with it: BASIC draws Arabic unjoined and RTL text reversed."""
    return ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC


def available_fonts(spec: ScriptSpec, dirs: Sequence[Path] = FONT_DIRS) -> list[tuple[Path, FontChoice]]:
    """Fonts of `spec` present on this machine (globbed once per set of directories)."""
    return installed(spec.fonts, dirs)


def usable_scripts(dirs: Sequence[Path] = FONT_DIRS) -> tuple[list[ScriptSpec], list[str]]:
    """Split SCRIPTS into those with a font here and the codes of those without (warned once each)."""
    usable, missing = [], []
    for spec in SCRIPTS:
        if available_fonts(spec, dirs):
            usable.append(spec)
            continue
        missing.append(spec.code)
        if spec.code not in _warned:
            _warned.add(spec.code)
            print(f"demo_corpus: no Noto font for script {spec.code}; skipping it", file=sys.stderr)
    return usable, missing


@lru_cache(maxsize=256)
def _font(path: Path, index: int, size: int, engine: ImageFont.Layout) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(str(path), size, index=index, layout_engine=engine)


def _has_all_glyphs(path: Path, index: int, text: str, engine: ImageFont.Layout) -> bool:
    """Reject tofu: a character whose bitmap equals the .notdef box is not in the font."""
    font = _font(path, index, 32, engine)

    def bitmap(ch: str) -> bytes:
        canvas = Image.new("L", (96, 96))
        ImageDraw.Draw(canvas).text((24, 24), ch, font=font, fill=255)
        return canvas.tobytes()

    notdef = bitmap("\U0010fffd")
    return all(bitmap(ch) != notdef for ch in sorted(set(text)) if not ch.isspace())


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _luma(rgb: tuple[int, int, int]) -> float:
    return 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]


def _background(rng: np.random.Generator, w: int, h: int) -> tuple[Image.Image, str, float]:
    """Plain or two-colour linear gradient; returns the image, its caption words and its mean luma."""
    names = list(PALETTE)
    first = names[int(rng.integers(len(names)))]
    if rng.random() < 0.5:
        return Image.new("RGB", (w, h), PALETTE[first]), f"a plain {first} background", _luma(PALETTE[first])
    close = [n for n in names if n != first and abs(_luma(PALETTE[n]) - _luma(PALETTE[first])) < 90]
    second = close[int(rng.integers(len(close)))] if close else first
    a, b = np.array(PALETTE[first], np.float32), np.array(PALETTE[second], np.float32)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = int(rng.integers(3))
    t = (xx / max(1, w - 1), yy / max(1, h - 1), (xx + yy) / max(1, w + h - 2))[direction]
    pixels = a + (b - a) * t[..., None]
    mean = (_luma(PALETTE[first]) + _luma(PALETTE[second])) / 2
    words = f"{_article(first)} {first} to {second} gradient background"
    return Image.fromarray(pixels.round().astype(np.uint8)), words, mean


def _foreground(rng: np.random.Generator, bg_luma: float) -> str:
    legible = [n for n, rgb in PALETTE.items() if abs(_luma(rgb) - bg_luma) > 110]
    return legible[int(rng.integers(len(legible)))] if legible else ("black" if bg_luma > 128 else "white")


def _fit(
    draw: ImageDraw.ImageDraw,
    text: str,
    path: Path,
    index: int,
    engine: ImageFont.Layout,
    box_w: int,
    box_h: int,
    start: int,
) -> tuple[ImageFont.FreeTypeFont, tuple[int, int, int, int]]:
    size = start
    while True:
        font = _font(path, index, size, engine)
        bbox = draw.multiline_textbbox((0, 0), text, font=font, align="center")
        if (bbox[2] - bbox[0] <= box_w and bbox[3] - bbox[1] <= box_h) or size <= 12:
            return font, bbox
        size = max(12, int(size * 0.9))


def _aspect(path: Path, index: int, text: str, engine: ImageFont.Layout) -> float:
    """Width / height of `text` as set in this font: decides which canvas shapes keep it legible."""
    bbox = ImageDraw.Draw(Image.new("L", (1, 1))).multiline_textbbox(
        (0, 0), text, font=_font(path, index, 48, engine), align="center"
    )
    return (bbox[2] - bbox[0]) / max(1, bbox[3] - bbox[1])


@dataclass(frozen=True)
class TextImage:
    """A rendered text image with the facts its label and caption need."""

    image: Image.Image
    text: str  # exactly what was drawn; "\n" separates lines
    caption: str
    script: str
    lang: str
    font: str
    shaped: bool  # False when a complex script had to be drawn without raqm
    plain_background: bool  # flat colour: PNG-friendly; gradients are stored as JPEG


def render_text_image(
    rng: np.random.Generator, spec: ScriptSpec, phrase: str, dirs: Sequence[Path] = FONT_DIRS, max_side: int = 1024
) -> TextImage:
    """Draw `phrase` large and centred on a plain or gradient background, sides in [256, max_side]."""
    engine = layout_engine()
    fonts = available_fonts(spec, dirs)
    if not fonts:
        raise FileNotFoundError(f"no font for script {spec.code}")
    order = [fonts[int(i)] for i in rng.permutation(len(fonts))]
    path, choice = next(((p, c) for p, c in order if _has_all_glyphs(p, c.index, phrase, engine)), order[0])
    # Wide banner, square card or tall poster. Cards and posters stack words one per line, as
    # signs do; text still too wide for the shape falls back to a wider one so it stays legible.
    shape = int(rng.integers(3))
    stacked = phrase.replace(" ", "\n") if " " in phrase and "\n" not in phrase else phrase
    aspect = _aspect(path, choice.index, stacked, engine)
    if shape == 2 and aspect > 2.2:
        shape = 1
    if shape == 1 and aspect > 4.0:
        shape = 0
    text = stacked if shape else phrase
    long_side = int(rng.integers(min(384, max_side), max_side + 1))
    short_side = int(rng.integers(256, max(257, int(long_side * 0.75))))
    w, h = [(long_side, short_side), (short_side, short_side), (short_side, long_side)][shape]
    surface = [("banner", "sign"), ("card", "sign"), ("poster", "flyer")][shape][int(rng.integers(2))]
    img, bg_words, bg_luma = _background(rng, w, h)
    colour = _foreground(rng, bg_luma)
    draw = ImageDraw.Draw(img)
    # Varied text box size, placement and an optional frame keep posters perceptually distinct
    # from each other (a dedup filter must not see two different texts as near-duplicates).
    box_w, box_h = int(w * rng.uniform(0.7, 0.9)), int(h * rng.uniform(0.45, 0.75))
    font, bbox = _fit(draw, text, path, choice.index, engine, box_w, box_h, int(h * 0.45))
    free_x, free_y = w - (bbox[2] - bbox[0]), h - (bbox[3] - bbox[1])
    x = int(free_x * rng.uniform(0.15, 0.85)) - bbox[0]
    y = int(free_y * rng.uniform(0.15, 0.85)) - bbox[1]
    draw.multiline_text((x, y), text, font=font, fill=PALETTE[colour], align="center")
    framed = rng.random() < 0.4
    if framed:
        inset, width = int(rng.integers(6, 24)), int(rng.integers(3, 9))
        draw.rectangle((inset, inset, w - 1 - inset, h - 1 - inset), outline=PALETTE[colour], width=width)
    shown = " ".join(text.split("\n"))
    frame = f" with a {colour} frame" if framed else ""
    caption = f'a {surface} with the text "{shown}" in {colour} {choice.style} letters on {bg_words}{frame}'
    shaped = engine == ImageFont.Layout.RAQM or not spec.needs_shaping
    plain = bg_words.startswith("a plain")
    return TextImage(img, text, caption, spec.code, spec.lang, path.name, shaped, plain)
