"""Synthetic text renders with exact ground truth, in the seeds' three kinds, without generative models.

* pure: one to three lines on a plain or gradient background (typography on its own);
* compositional: a sign placed into a scikit-image photo with a perspective warp and a lighting
  gradient (text embedded in scenes);
* complex: paragraphs, slides, posters, tables and menus (multi-line layout, reading order).

Shaping goes through libraqm (Pillow's RAQM layout), which Arabic joining, Indic conjuncts and
Thai mark stacking need; without raqm complex scripts are refused instead of drawn wrong.
Every sample records its lines in reading order, script, language, font and pixel size.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, features

from captioners.synth.corpus import SCRIPTS, ScriptText, fonts_for
from flywheel.errors import UserError

KINDS = ("pure", "compositional", "complex")
LAYOUTS = ("paragraph", "slide", "poster", "table", "menu")
_NEEDS_RAQM = frozenset({"Arab", "Deva", "Thai", "Beng", "Taml", "Gujr"})
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "cat")


class SynthError(UserError):
    """A synthetic render cannot be made as asked (unknown kind/script, missing font or raqm)."""


@dataclass(frozen=True)
class SynthSample:
    image: Image.Image
    lines: tuple[str, ...]  # exact text in reading order
    kind: str
    layout: str
    script: str
    lang: str
    font: str
    font_px: int
    caption: str


@lru_cache(maxsize=512)
def _font(path: Path, index: int, size: int) -> ImageFont.FreeTypeFont:
    engine = ImageFont.Layout.RAQM if features.check("raqm") else ImageFont.Layout.BASIC
    return ImageFont.truetype(str(path), size, index=index, layout_engine=engine)


def _pick_font(spec: ScriptText, rng: np.random.Generator) -> tuple[Path, int]:
    if spec.code in _NEEDS_RAQM and not features.check("raqm"):
        raise SynthError(f"script {spec.code} needs libraqm for shaping; install libraqm0 (Pillow uses it at runtime)")
    fonts = fonts_for(spec)
    if not fonts:
        raise SynthError(
            f"no Noto font for script {spec.code} (wanted {spec.fonts[0][0]}); install fonts-noto-core "
            "and fonts-noto-cjk"
        )
    return fonts[int(rng.integers(len(fonts)))]


def _colours(rng: np.random.Generator) -> tuple[tuple[int, int, int], tuple[int, int, int], str]:
    """Background and text colours with a luma gap of at least 120 (legible), and caption words for them."""
    dark = rng.random() < 0.3
    light = tuple(int(v) for v in rng.integers(200, 256, 3))
    deep = tuple(int(v) for v in rng.integers(0, 70, 3))
    bg, fg = (deep, light) if dark else (light, deep)
    return bg, fg, "light text on a dark background" if dark else "dark text on a light background"  # type: ignore[return-value]


def _width(font: ImageFont.FreeTypeFont, text: str, rtl: bool) -> float:
    return font.getlength(text, direction="rtl" if rtl else None) if text else 0.0


def wrap(text: str, font: ImageFont.FreeTypeFont, max_w: int, spec: ScriptText) -> list[str]:
    """Greedy line breaking by measured width: at spaces, or between any characters for CJK and Thai."""
    units = list(text) if not spec.spaces else text.split(" ")
    sep = "" if not spec.spaces else " "
    lines, current = [], ""
    for unit in units:
        trial = current + sep + unit if current else unit
        if current and _width(font, trial, spec.rtl) > max_w:
            lines.append(current)
            current = unit
        else:
            current = trial
    if current:
        lines.append(current)
    return lines


def _draw_lines(
    draw: ImageDraw.ImageDraw,
    lines: list[str],
    font: ImageFont.FreeTypeFont,
    x: int,
    y: int,
    w: int,
    fill: tuple[int, ...],
    spec: ScriptText,
    align: str = "start",
    spacing: float = 1.5,
) -> int:
    """Draw lines top to bottom inside [x, x+w]; return the y below the last line."""
    step = int(font.size * spacing)
    for line in lines:
        lw = _width(font, line, spec.rtl)
        lx = x + (w - lw) / 2 if align == "center" else (x + w - lw if spec.rtl else x)
        draw.text((lx, y), line, font=font, fill=fill, direction="rtl" if spec.rtl else None)
        y += step
    return y


def render_pure(
    spec: ScriptText, rng: np.random.Generator, font_px: int | None = None, text: str | None = None
) -> SynthSample:
    path, index = _pick_font(spec, rng)
    px = font_px or int(rng.choice([12, 16, 20, 24, 32, 48, 64, 96]))
    font = _font(path, index, px)
    if text is None:
        n = int(rng.integers(1, 4))
        text = "\n".join(str(p) for p in rng.choice(spec.phrases, size=min(n, len(spec.phrases)), replace=False))
    lines = text.split("\n")
    width = int(max(_width(font, ln, spec.rtl) for ln in lines) + 2 * px + rng.integers(0, 4 * px + 1))
    height = int(len(lines) * px * 1.6 + 2 * px + rng.integers(0, 2 * px + 1))
    bg, fg, words = _colours(rng)
    img = Image.new("RGB", (max(64, width), max(48, height)), bg)
    draw = ImageDraw.Draw(img)
    top = int((img.height - len(lines) * px * 1.6) / 2)
    _draw_lines(draw, lines, font, px, top, img.width - 2 * px, fg, spec, align="center", spacing=1.6)
    quoted = " / ".join(f'"{ln}"' for ln in lines)
    caption = f"{spec.code} text {quoted} set in {path.stem} at {px}px, {words}"
    return SynthSample(img, tuple(lines), "pure", "lines", spec.code, spec.lang, path.name, px, caption)


def _sign(spec: ScriptText, rng: np.random.Generator, px: int) -> tuple[Image.Image, list[str], str]:
    path, index = _pick_font(spec, rng)
    font = _font(path, index, px)
    lines = [str(p) for p in rng.choice(spec.phrases, size=int(rng.integers(1, 3)), replace=False)]
    w = int(max(_width(font, ln, spec.rtl) for ln in lines) + 2 * px)
    h = int(len(lines) * px * 1.5 + 1.2 * px)
    bg, fg, _ = _colours(rng)
    sign = Image.new("RGBA", (w, h), (*bg, 235))
    draw = ImageDraw.Draw(sign)
    _draw_lines(draw, lines, font, px, int(0.6 * px), w - 2 * px, (*fg, 255), spec, align="center")
    draw.rectangle((0, 0, w - 1, h - 1), outline=(*fg, 255), width=max(2, px // 12))
    return sign, lines, path.name


def _perspective(img: Image.Image, rng: np.random.Generator, strength: float) -> Image.Image:
    """Warp with a random homography (corners moved by up to `strength` of the size): a sign seen at an angle."""
    w, h = img.size
    d = strength * np.array([w, h])
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
    dst = src + rng.uniform(-1, 1, (4, 2)) * d
    dst -= dst.min(axis=0)
    a = []
    for (x, y), (u, v) in zip(dst, src, strict=True):  # maps output (dst) coordinates back to input (src)
        a.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        a.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    coeffs = np.linalg.solve(np.array(a), src.reshape(-1))
    size = (int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1)
    return img.transform(size, Image.Transform.PERSPECTIVE, tuple(coeffs), Image.Resampling.BICUBIC)


@lru_cache(maxsize=8)
def _photo(name: str) -> Image.Image:
    import skimage.data

    arr = getattr(skimage.data, name)()
    return Image.fromarray(arr).convert("RGB")


def render_compositional(spec: ScriptText, rng: np.random.Generator, font_px: int | None = None) -> SynthSample:
    photo_name = str(rng.choice(PHOTOS))
    photo = _photo(photo_name).copy()
    px = font_px or int(rng.choice([20, 28, 36, 48]))
    sign, lines, font = _sign(spec, rng, px)
    if sign.width > photo.width * 0.9:
        ratio = photo.width * 0.9 / sign.width
        sign = sign.resize((int(sign.width * ratio), max(1, int(sign.height * ratio))), Image.Resampling.LANCZOS)
        px = max(1, int(px * ratio))
    sign = _perspective(sign, rng, float(rng.uniform(0.02, 0.12)))
    x = int(rng.integers(0, max(1, photo.width - sign.width)))
    y = int(rng.integers(0, max(1, photo.height - sign.height)))
    photo.paste(sign, (x, y), sign)
    # Lighting: a soft directional gradient multiplies the whole scene, then a slight blur (camera softness).
    yy, xx = np.mgrid[0 : photo.height, 0 : photo.width].astype(np.float32)
    angle = float(rng.uniform(0, 2 * np.pi))
    t = np.cos(angle) * xx / photo.width + np.sin(angle) * yy / photo.height
    t = (t - t.min()) / max(1e-6, float(t.max() - t.min()))
    light = 0.7 + 0.45 * t
    pixels = np.clip(np.asarray(photo, np.float32) * light[..., None], 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels).filter(ImageFilter.GaussianBlur(float(rng.uniform(0, 0.8))))
    quoted = " / ".join(f'"{ln}"' for ln in lines)
    caption = f"a photo ({photo_name}) with a sign reading {quoted} in {spec.code} script, seen at an angle"
    return SynthSample(img, tuple(lines), "compositional", "sign_in_photo", spec.code, spec.lang, font, px, caption)


def render_complex(
    spec: ScriptText, rng: np.random.Generator, layout: str | None = None, font_px: int | None = None
) -> SynthSample:
    layout = layout or str(rng.choice(LAYOUTS))
    if layout not in LAYOUTS:
        raise SynthError(f"unknown layout {layout!r}; known: {', '.join(LAYOUTS)}")
    path, index = _pick_font(spec, rng)
    px = font_px or int(rng.choice([16, 20, 24, 28]))
    body = _font(path, index, px)
    title = _font(path, index, int(px * 1.8))
    bg, fg, words = _colours(rng)
    width = int(rng.integers(640, 1025))
    img = Image.new("RGB", (width, 2400), bg)
    draw = ImageDraw.Draw(img)
    margin = int(0.06 * width)
    inner = width - 2 * margin
    lines: list[str] = []
    y = margin
    if layout in ("slide", "poster", "menu", "table"):
        head = str(rng.choice(spec.phrases))
        y = _draw_lines(
            draw,
            [head],
            title,
            margin,
            y,
            inner,
            fg,
            spec,
            align="center" if layout != "slide" else "start",
            spacing=1.6,
        )
        lines.append(head)
        y += px // 2
    if layout == "paragraph" or layout == "poster":
        n = 2 if layout == "poster" else int(rng.integers(2, 5))
        text = (" " if spec.spaces else "").join(str(s) for s in rng.choice(spec.sentences, size=n))
        wrapped = wrap(text, body, inner, spec)
        y = _draw_lines(
            draw, wrapped, body, margin, y, inner, fg, spec, align="center" if layout == "poster" else "start"
        )
        lines += wrapped
    elif layout == "slide":
        for sentence in rng.choice(spec.sentences, size=min(3, len(spec.sentences)), replace=False):
            bullet = wrap(str(sentence), body, inner - px * 2, spec)
            dot_x = margin + inner - px // 2 if spec.rtl else margin
            draw.ellipse((dot_x, y + px * 0.4, dot_x + px * 0.4, y + px * 0.8), fill=fg)
            y = _draw_lines(draw, bullet, body, margin + (0 if spec.rtl else px), y, inner - px, fg, spec)
            lines += bullet
    elif layout in ("menu", "table"):
        items = [
            str(i) for i in rng.choice(spec.items, size=min(len(spec.items), int(rng.integers(3, 6))), replace=False)
        ]
        row_h = int(px * 1.9)
        for item in items:
            if layout == "table":
                draw.line((margin, y - px // 3, margin + inner, y - px // 3), fill=fg, width=1)
            y = _draw_lines(draw, [item], body, margin, y, inner, fg, spec)
            y += row_h - int(px * 1.5)
            lines.append(item)
        if layout == "table":
            draw.line((margin, y - px // 3, margin + inner, y - px // 3), fill=fg, width=1)
    img = img.crop((0, 0, width, min(img.height, y + margin)))
    quoted = " / ".join(f'"{ln}"' for ln in lines)
    caption = f"a {layout} in {spec.code} script, {words}, reading {quoted}"
    return SynthSample(img, tuple(lines), "complex", layout, spec.code, spec.lang, path.name, px, caption)


def render(kind: str, script: str, rng: np.random.Generator) -> SynthSample:
    if script not in SCRIPTS:
        raise SynthError(f"unknown script {script!r}; known: {', '.join(SCRIPTS)}")
    spec = SCRIPTS[script]
    if kind == "pure":
        return render_pure(spec, rng)
    if kind == "compositional":
        return render_compositional(spec, rng)
    if kind == "complex":
        return render_complex(spec, rng)
    raise SynthError(f"unknown synthetic kind {kind!r}; known: {', '.join(KINDS)}")
