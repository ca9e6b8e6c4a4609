"""A harder labeled corpus for stage-1 filters, in two splits built from different source images.

The demo corpus (`corpus.build`) is what the thresholds grew up on; this one is built to find where they
fail, with the categories an independent hostile corpus showed to be hard:

- low information: solid colours, near-flat gradients (a few to ~30 luma levels across the image) and
  faint noise (sigma 0.5..2) on a flat or near-flat background; the hard negatives are text on plain
  backgrounds, including one short word on a large canvas;
- near duplicates of photos, procedural scenes and documents: resized, cropped (2-8% a side), brightened
  or darkened, re-encoded, and combinations; the hard negatives are distinct documents (same layout, other
  text) and distinct landscapes (same generator, other parameters).

Splits: `tune` and `report` never share a source photo (scikit-image and scikit-learn photos, a disjoint
set each), use different scene/document seeds, and different phrase slots of each script, so a threshold
chosen on `tune` is measured on images it never saw. Everything is built offline in memory (a few
seconds).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import skimage.data
from PIL import Image, ImageDraw, ImageEnhance

from corpus.text import FONT_DIRS, available_fonts, render_text_image, usable_scripts

SPLITS = ("tune", "report")
# Source photos per split: no photo (nor the same photo under two names, like skimage's cat and chelsea)
# appears on both sides.
PHOTO_SOURCES: dict[str, tuple[str, ...]] = {
    "tune": ("astronaut", "coffee", "chelsea", "rocket", "camera", "brick", "sklearn:china.jpg", "moon"),
    "report": (
        "retina",
        "hubble_deep_field",
        "immunohistochemistry",
        "sklearn:flower.jpg",
        "stereo_motorcycle",
        "coins",
        "gravel",
        "clock",
    ),
}
SEEDS = {"tune": 1000, "report": 2000}
WORDS = tuple(
    [
        "invoice",
        "total",
        "amount",
        "date",
        "payment",
        "order",
        "customer",
        "account",
        "number",
        "balance",
        "due",
        "reference",
        "shipping",
        "address",
        "quantity",
        "price",
        "item",
        "description",
        "tax",
        "subtotal",
        "report",
        "summary",
        "meeting",
        "agenda",
        "minutes",
        "project",
        "status",
        "budget",
        "schedule",
        "review",
        "approved",
        "pending",
        "signature",
        "department",
        "office",
        "contract",
        "terms",
        "notice",
    ]
)


@dataclass
class HardSample:
    """One file of the hard corpus and its labels."""

    name: str
    data: bytes
    category: str  # photo | scene | document | text | low_info
    low_info: str | None = None  # solid | gradient | noise (None: has content)
    group: str | None = None  # near-duplicate group id (original and its variants share it)
    variant: str | None = None  # how a duplicate was made (None: the original)
    source: str = ""  # source photo / generator seed
    caption: str = ""
    meta: dict[str, Any] = field(default_factory=dict)

    def label(self) -> dict[str, Any]:
        return {
            "file": self.name,
            "category": self.category,
            "low_info": self.low_info,
            "group": self.group,
            "variant": self.variant,
            "source": self.source,
            **self.meta,
        }


def _encode(img: Image.Image, fmt: str = "JPEG", quality: int = 90) -> bytes:
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.convert("RGB").save(buf, format="JPEG", quality=quality)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def _photo(name: str) -> np.ndarray:
    if name.startswith("sklearn:"):
        from sklearn.datasets import load_sample_image

        arr = load_sample_image(name.split(":", 1)[1])
    else:
        arr = getattr(skimage.data, name)()
    if isinstance(arr, tuple):
        arr = arr[0]
    if arr.dtype != np.uint8:
        arr = (arr.astype(np.float32) * (255.0 / max(1.0, float(arr.max())))).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.stack([arr] * 3, axis=-1)
    return np.ascontiguousarray(arr[..., :3])


def photo_crops(rng: np.random.Generator, name: str, n: int) -> list[Image.Image]:
    """`n` crops of one photo on a grid of non-overlapping cells (distinct content), upscaled to 256..640."""
    arr = _photo(name)
    h, w = arr.shape[:2]
    cols = max(1, int(np.ceil(np.sqrt(n))))
    rows = max(1, int(np.ceil(n / cols)))
    rows += 1  # one spare row of cells: flat cells (a bare wall, black sky) are dropped, since they are
    # genuinely low-information and would be mislabeled as content
    out = []
    cells = []
    for r in range(rows):
        for c in range(cols):
            cell = arr[r * h // rows : (r + 1) * h // rows, c * w // cols : (c + 1) * w // cols]
            cells.append((float(cell.mean(axis=2).std()), cell))
    textured = [cell for std, cell in cells if std >= 12.0][:n]
    for cell in textured:
        crop = Image.fromarray(cell)
        short = int(rng.integers(256, 641))
        scale = short / min(crop.size)
        out.append(crop.resize((round(crop.width * scale), round(crop.height * scale)), Image.Resampling.LANCZOS))
    return out


def landscape(rng: np.random.Generator, w: int = 640, h: int = 480) -> Image.Image:
    """A procedural upright scene: sky gradient, sun, layered hills, trees and a ground plane."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    top = rng.uniform([40, 80, 150], [120, 170, 255])
    bottom = rng.uniform([150, 180, 200], [255, 240, 255])
    t = (yy / h)[..., None]
    img = top * (1 - t) + bottom * t
    horizon = h * rng.uniform(0.35, 0.65)
    for layer in range(int(rng.integers(2, 5))):
        base = horizon + layer * h * rng.uniform(0.04, 0.12)
        amp, freq, phase = h * rng.uniform(0.03, 0.15), rng.uniform(1.0, 6.0), rng.uniform(0, 2 * np.pi)
        ridge = base - amp * np.sin(xx[0] / w * freq * np.pi + phase) - amp * 0.4 * np.sin(xx[0] / w * 17 + phase)
        colour = rng.uniform([20, 60, 10], [120, 170, 90]) * (0.7 + 0.1 * layer)
        img[yy >= ridge[None, :]] = colour
    pil = Image.fromarray(np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    sx, sy, sr = rng.uniform(0.1, 0.9) * w, rng.uniform(0.05, 0.3) * h, rng.uniform(0.03, 0.08) * w
    draw.ellipse((sx - sr, sy - sr, sx + sr, sy + sr), fill=tuple(int(v) for v in rng.uniform([230, 200, 80], 255)))
    for _ in range(int(rng.integers(3, 12))):
        tx, ty = rng.uniform(0, w), rng.uniform(horizon, h * 0.95)
        th = rng.uniform(0.05, 0.2) * h
        draw.rectangle((tx - th * 0.05, ty - th * 0.3, tx + th * 0.05, ty), fill=(90, 60, 30))
        draw.polygon(
            [(tx - th * 0.25, ty - th * 0.3), (tx + th * 0.25, ty - th * 0.3), (tx, ty - th)], fill=(20, 90, 30)
        )
    return pil


def document(rng: np.random.Generator, font_path: Path, w: int = 600, h: int = 800) -> Image.Image:
    """A page of black text lines on white: distinct pages share the layout, which is what makes them hard."""
    from PIL import ImageFont

    img = Image.new("RGB", (w, h), (250, 250, 248))
    draw = ImageDraw.Draw(img)
    title = ImageFont.truetype(str(font_path), 34)
    body = ImageFont.truetype(str(font_path), 18)
    draw.text((50, 40), " ".join(rng.choice(WORDS, 3)).upper(), font=title, fill=(10, 10, 10))
    y = 110
    while y < h - 60:
        words = " ".join(rng.choice(WORDS, int(rng.integers(4, 9))))
        draw.text((50, y), words, font=body, fill=(20, 20, 20))
        y += int(rng.integers(24, 34)) + (30 if rng.random() < 0.12 else 0)
    return img


def low_info_image(rng: np.random.Generator, kind: str) -> Image.Image:
    """Solid colour, near-flat gradient (<= ~30 levels), or faint noise (sigma <= 2) on a flat/near-flat field."""
    w, h = int(rng.integers(256, 1025)), int(rng.integers(256, 1025))
    colour = rng.uniform(0, 255, 3)
    if kind == "solid":
        return Image.new("RGB", (w, h), tuple(int(c) for c in colour))
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    direction = int(rng.integers(4))
    t = (xx / w, yy / h, (xx + yy) / (w + h), np.hypot(xx / w - 0.5, yy / h - 0.5) * 1.4)[direction]
    if kind == "gradient":
        delta = rng.uniform(4, 30) * rng.choice([-1, 1], 3)
        img = colour + delta * t[..., None]
    else:  # faint noise, on a flat or barely graded field
        delta = rng.uniform(0, 8) * rng.choice([-1, 1], 3)
        img = colour + delta * t[..., None] + rng.normal(0, rng.uniform(0.5, 2.0), (h, w, 1))
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8))


def near_dup_variant(rng: np.random.Generator, img: Image.Image, kind: str) -> Image.Image:
    """resize | crop | bright | reencode | combo: the transformations a scraped copy goes through."""
    out = img.convert("RGB")
    if kind in ("resize", "combo"):
        f = rng.uniform(0.45, 0.85)
        out = out.resize((max(64, round(out.width * f)), max(64, round(out.height * f))), Image.Resampling.BILINEAR)
    if kind in ("crop", "combo"):
        w, h = out.size
        fx, fy = rng.uniform(0.02, 0.08, 2), rng.uniform(0.02, 0.08, 2)
        out = out.crop((round(w * fx[0]), round(h * fy[0]), w - round(w * fx[1]), h - round(h * fy[1])))
    if kind in ("bright", "combo"):
        out = ImageEnhance.Brightness(out).enhance(float(rng.choice([rng.uniform(0.8, 0.92), rng.uniform(1.08, 1.2)])))
    return out


def build_split(split: str, scale: int = 1) -> list[HardSample]:
    """All samples of one split (deterministic for a split and scale)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    rng = np.random.default_rng(SEEDS[split] + scale)
    samples: list[HardSample] = []
    counter = iter(range(1_000_000))

    def add(img: Image.Image, category: str, fmt: str = "JPEG", quality: int = 90, **kw: Any) -> HardSample:
        ext = "jpg" if fmt == "JPEG" else fmt.lower()
        s = HardSample(f"{split}_{next(counter):05d}.{ext}", _encode(img, fmt, quality), category, **kw)
        samples.append(s)
        return s

    variants = ("resize", "crop", "bright", "reencode", "combo")

    def with_dups(img: Image.Image, category: str, source: str, n_dups: int) -> None:
        original = add(img, category, quality=int(rng.integers(85, 96)), source=source)
        if n_dups:
            original.group = original.name
        for k in range(n_dups):
            kind = variants[int(rng.integers(len(variants)))] if k else variants[int(rng.integers(4))]
            var = near_dup_variant(rng, img, kind)
            quality = int(rng.integers(45, 70)) if kind in ("reencode", "combo") else int(rng.integers(75, 92))
            add(var, category, quality=quality, source=source, group=original.name, variant=kind)

    for name in PHOTO_SOURCES[split]:
        for crop in photo_crops(rng, name, 9 * scale):
            with_dups(crop, "photo", name, int(rng.choice([0, 0, 1, 2])))
    for _ in range(40 * scale):
        with_dups(
            landscape(rng, int(rng.integers(480, 800)), int(rng.integers(320, 600))),
            "scene",
            "landscape",
            int(rng.choice([0, 0, 1, 2])),
        )
    font = _latin_font()
    if font is not None:
        for _ in range(30 * scale):
            with_dups(document(rng, font), "document", "document", int(rng.choice([0, 0, 1])))
    scripts, _ = usable_scripts(FONT_DIRS)
    slot = 0 if split == "tune" else 1
    for spec in scripts:
        phrases = spec.phrases[slot::2] or spec.phrases
        for phrase in phrases[: 3 * scale]:
            t = render_text_image(rng, spec, phrase, max_side=1024)
            fmt = "PNG" if t.plain_background else "JPEG"
            add(t.image, "text", fmt=fmt, source=spec.code, meta={"plain_background": t.plain_background})
        if spec.code == "Latn":  # one short word, small, on a large plain canvas: must not look blank
            for word in phrases[: 4 * scale]:
                add(
                    _small_word(rng, word.split()[0], available_fonts(spec)[0][0]),
                    "text",
                    fmt="PNG",
                    source="Latn-small",
                    meta={"plain_background": True},
                )
    for kind, n in (("solid", 12), ("gradient", 20), ("noise", 20)):
        for _ in range(n * scale):
            fmt = "PNG" if rng.random() < 0.4 else "JPEG"
            add(
                low_info_image(rng, kind),
                "low_info",
                fmt=fmt,
                quality=int(rng.integers(80, 96)),
                low_info=kind,
                source=kind,
            )
    return samples


def _small_word(rng: np.random.Generator, word: str, font_path: Path) -> Image.Image:
    from PIL import ImageFont

    w, h = int(rng.integers(600, 1025)), int(rng.integers(400, 800))
    bg = tuple(int(v) for v in rng.uniform(200, 255, 3))
    img = Image.new("RGB", (w, h), bg)
    font = ImageFont.truetype(str(font_path), int(rng.integers(28, 48)))
    ImageDraw.Draw(img).text((rng.uniform(0.1, 0.6) * w, rng.uniform(0.1, 0.7) * h), word, font=font, fill=(20, 20, 20))
    return img


def _latin_font() -> Path | None:
    for spec in usable_scripts(FONT_DIRS)[0]:
        if spec.code == "Latn":
            fonts = available_fonts(spec)
            return fonts[0][0] if fonts else None
    return None
