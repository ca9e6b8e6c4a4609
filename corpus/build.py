"""Labeled demo/test corpus for the stage-1 filters, written as a FOLDER source.

Why: every stage-1 filter (broken files, resolution, dedup, rotation, entropy, captions, text
rendering) needs inputs whose right answer is known. This module writes real files (photo
crops, text images in ten scripts, and deliberately damaged or duplicated variants) into
`OUT/images/` with `name.txt` caption sidecars (and `name.json` edit sidecars for TI2I
triples), plus `OUT/labels.jsonl` outside the image folder so ingest never sees the answers
(schema: corpus/labels.py). Output is a pure function of (plan, seed) on a given
machine (Pillow/libjpeg/zlib/fonts): the same seed gives the same bytes.

Layout: photo crops and text images come first (the originals), then labeled variants made
from them or from fresh crops: exact/near duplicates, rotated and EXIF-oriented copies,
blank, tiny, broken and mislabeled files, bad captions, and TI2I edit triples.

Usage: python -m corpus.build OUT [--scale N] [--seed S] [--overwrite] [--small]
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import sys
import time
from collections import Counter
from itertools import cycle
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageFont

from corpus import variants as V
from corpus.labels import CorpusInfo, CorpusPlan, LabelWriter
from corpus.photos import PHOTOS, Crop, PhotoPool
from corpus.text import (
    FONT_DIRS,
    PALETTE,
    TextImage,
    layout_engine,
    render_text_image,
    usable_scripts,
)
from flywheel.imaging import decode

__all__ = ["CorpusInfo", "CorpusPlan", "build_corpus", "main"]

PLACEHOLDERS = ("IMG_2041.JPG", "DSC_0042", "untitled")
GARBLED = ("Ã©Ã¨ï¿½ï¿½", "Ã¢â‚¬Å“cafÃƒÂ© Ã  la crÃ¨me ï¿½ï¿½ï¿½")
REPETITIVE = ("cat cat cat cat cat cat cat cat", "a photo of a photo of a photo of a photo of a photo of a photo of")
EMPTY = ("", "   \n")


def _decoded_distance(data: bytes, original: Path) -> int:
    """pHash distance as the dedup scorer will see it (after flywheel's own decode), for evaluation."""
    a, b = decode(data, view_short_side=64), decode(original.read_bytes(), view_short_side=64)
    return V.hamming(V.phash(Image.fromarray(a.gray)), V.phash(Image.fromarray(b.gray)))


def _ext(fmt: str) -> str:
    return {"JPEG": "jpg", "PNG": "png", "TIFF": "tif"}[fmt]


def _text_fields(t: TextImage) -> dict[str, Any]:
    return {"script": t.script, "text": t.text, "lang": t.lang, "font": t.font, "shaped": t.shaped}


def build_corpus(
    out_dir: Path,
    scale: int = 1,
    seed: int = 0,
    *,
    plan: CorpusPlan | None = None,
    overwrite: bool = False,
    font_dirs: tuple[Path, ...] = FONT_DIRS,
) -> CorpusInfo:
    """Write the corpus under `out_dir` (images/ + labels.jsonl) and say what was written.

    Refuses to write into a non-empty `out_dir/images` unless `overwrite` (which removes only that
    folder; labels.jsonl is rewritten), so stale files can never mix into a run's labels.
    """
    plan = plan or CorpusPlan.default(scale)
    out_dir = Path(out_dir)
    images_dir, labels_path = out_dir / "images", out_dir / "labels.jsonl"
    if images_dir.exists() and any(images_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{images_dir} is not empty (pass overwrite=True / --overwrite)")
        shutil.rmtree(images_dir)
    images_dir.mkdir(parents=True, exist_ok=True)
    w = LabelWriter(images_dir)
    pool = PhotoPool(max_side=plan.max_side)
    scripts, missing = usable_scripts(font_dirs)

    def rng(section: int) -> np.random.Generator:
        # One stream per section, so changing one section's counts leaves the others' bytes alone.
        return np.random.default_rng([seed, section])

    def fresh(r: np.random.Generator) -> Crop:
        return pool.crop(r, plan.photos[int(r.integers(len(plan.photos)))])

    def fresh_text(r: np.random.Generator, k: int) -> TextImage | None:
        """A text image not perceptually close to anything so far; None when no script has a font."""
        if not scripts:
            return None
        spec = scripts[k % len(scripts)]
        for attempt in range(12):  # each script's phrases in turn; a random one if the layout clashed
            j = k // len(scripts) if attempt == 0 else int(r.integers(len(spec.phrases)))
            phrase = spec.phrases[j % len(spec.phrases)]
            t = render_text_image(r, spec, phrase, font_dirs, plan.max_side)
            if pool.remember(t.image):
                break
        return t

    def quality(r: np.random.Generator) -> int:
        return int(r.integers(60, 96))

    # 1. Photo crops (originals).
    r = rng(1)
    photos: list[tuple[str, Crop, int]] = []
    for name in plan.photos:
        for _ in range(plan.crops_per_photo):
            c, q = pool.crop(r, name), quality(r)
            f = w.add(
                V.encode(c.image, "JPEG", q, progressive=r.random() < 0.2),
                "jpg",
                "photo",
                c.caption,
                c.image.size,
                "JPEG",
            )
            photos.append((f, c, q))
    # 2. Text images (originals): flat ones as PNG, gradients as JPEG.
    r = rng(2)
    texts: list[tuple[str, TextImage, bytes]] = []
    for k in range(plan.texts_per_script * len(scripts)):
        t = fresh_text(r, k)
        if t is None:
            break
        fmt = "PNG" if t.plain_background else "JPEG"
        data = V.encode(t.image, fmt, 92)
        f = w.add(data, _ext(fmt), "text", t.caption, t.image.size, fmt, **_text_fields(t))
        texts.append((f, t, data))
    # 3. Exact duplicates: byte copies under a later name, alternating photo and text originals.
    r = rng(3)
    originals = [(f, "photo") for f, _, _ in photos] + [(f, "text") for f, _, _ in texts]
    by_file = {lab["file"]: lab for lab in w.labels}
    for i in r.permutation(len(originals))[: plan.exact_dups]:
        src, kind = originals[int(i)]
        lab = by_file[src]
        extra = {k: lab[k] for k in ("script", "text", "lang", "font", "shaped") if k in lab}
        w.add(
            (images_dir / src).read_bytes(),
            src.rsplit(".", 1)[1],
            kind,
            lab["caption"],
            (lab["width"], lab["height"]),
            lab["format"],
            exact_dup_of=src,
            derived_from=src,
            **extra,
        )
    # 4. Near duplicates (resized + requantised, or trimmed 2-4%) and 5. pixel-rotated copies of photos.
    r = rng(4)
    order = [photos[int(i)] for i in r.permutation(len(photos))]
    pick = cycle(order)
    for _ in range(plan.near_dups_resized):
        f, c, q = next(pick)
        img = V.near_dup_resized(c.image, float(r.uniform(0.5, 0.8)))
        q2 = int(np.clip(q + r.choice([-1, 1]) * r.integers(12, 25), 40, 95))
        data = V.encode(img, "JPEG", q2)
        w.add(
            data,
            "jpg",
            "photo",
            c.caption,
            img.size,
            "JPEG",
            near_dup_of=f,
            derived_from=f,
            phash_distance=_decoded_distance(data, images_dir / f),
        )
    for _ in range(plan.near_dups_cropped):
        f, c, q = next(pick)
        img = V.near_dup_cropped(c.image, float(r.uniform(0.02, 0.04)))
        data = V.encode(img, "JPEG", quality(r))
        w.add(
            data,
            "jpg",
            "photo",
            c.caption,
            img.size,
            "JPEG",
            near_dup_of=f,
            derived_from=f,
            phash_distance=_decoded_distance(data, images_dir / f),
        )
    for deg in plan.rotations:
        f, c, q = next(pick)
        img = V.rotate_clockwise(c.image, deg)
        w.add(V.encode(img, "JPEG", q), "jpg", "photo", c.caption, img.size, "JPEG", rotated=deg, derived_from=f)
    # 6. EXIF-orientation copies: stored turned, tagged so they display upright (rotated stays 0).
    r = rng(6)
    for orientation in plan.exif_orientations:
        c = fresh(r)
        data = V.exif_oriented_jpeg(c.image, orientation, quality(r))
        stored = Image.open(io.BytesIO(data)).size
        w.add(data, "jpg", "photo", c.caption, stored, "JPEG", exif_orientation=orientation)
    # 7. Blank: flat colour, and near-empty (a few stray pixels or a faint line).
    r = rng(7)
    names = list(PALETTE)
    for i in range(plan.blank_flat + plan.blank_near):
        colour_name = names[int(r.integers(len(names)))]
        colour = PALETTE[colour_name]
        size = (int(r.integers(256, 769)), int(r.integers(256, 769)))
        if i < plan.blank_flat:
            img, fmt = V.flat(size, colour), ("PNG", "JPEG")[i % 2]
        else:
            n = int(r.integers(3, 20))
            specks = (
                np.column_stack([r.integers(0, size[0], n), r.integers(0, size[1], n), r.integers(0, 256, (n, 3))])
                if i % 2 == 0
                else None
            )
            img = V.near_empty(
                size, colour, specks, line_delta=0 if specks is not None else 5, line_y=int(r.integers(0, size[1] - 2))
            )
            fmt = "PNG"
        caption = f"a plain {colour_name} background"
        w.add(V.encode(img, fmt, 90), _ext(fmt), "blank", caption, size, fmt, blank=True)
    # 8. Tiny images (min side 16..48).
    r = rng(8)
    for side in plan.tiny_sides:
        c = fresh(r)
        ratio = float(r.uniform(1.0, 2.0))
        cw, ch = c.image.size
        size = (round(side * ratio), side) if cw >= ch else (side, round(side * ratio))
        img = c.image.resize(size, Image.Resampling.LANCZOS)
        w.add(V.encode(img, "JPEG", quality(r)), "jpg", "photo", c.caption, size, "JPEG")
    _broken(w, plan, rng(9), fresh, fresh_text, quality)
    _mislabeled_and_captions(w, plan, rng(10), fresh, fresh_text, quality)
    # 12. TI2I edit triples: source (not a sample) + target with a json sidecar and no .txt: the folder
    # ingest takes a TI2I caption from "instruction", so the label's caption is the instruction too.
    r = rng(12)
    colour = [p for p in plan.photos if not PHOTOS[p].gray] or list(plan.photos)  # grey can't lose colour
    for i in range(plan.edits):
        c = pool.crop(r, colour[int(r.integers(len(colour)))])
        instruction, prefix = V.EDITS[i % len(V.EDITS)]
        src = w.source(V.encode(c.image, "JPEG", quality(r)), "jpg")
        target = V.apply_edit(c.image, instruction)
        f = w.add(
            V.encode(target, "JPEG", quality(r)),
            "jpg",
            "edit",
            instruction,
            target.size,
            "JPEG",
            write_caption=False,
            task="TI2I",
            edit_source=src,
            instruction=instruction,
            description=f"{prefix} {c.subject}",
            derived_from=src,
        )
        sidecar = json.dumps({"task": "TI2I", "source": src, "instruction": instruction}, ensure_ascii=False)
        (images_dir / f).with_suffix(".json").write_text(sidecar, encoding="utf-8")
    engine = layout_engine()
    if engine == ImageFont.Layout.RAQM:
        caveats = [
            f"{s.code}: shaped with raqm; label text is in logical (typed) order" for s in scripts if s.needs_shaping
        ]
    else:
        caveats = [
            f"{s.code}: drawn WITHOUT raqm, so joining/reordering/bidi are wrong (label shaped=false)"
            for s in scripts
            if s.needs_shaping
        ]
    return w.finish(
        labels_path,
        seed=seed,
        scale=scale,
        scripts=[s.code for s in scripts],
        missing=missing,
        layout=engine.name,
        caveats=caveats,
    )


_Fresh = Any  # callables passed down from build_corpus (kept loose to avoid a Protocol per helper)


def _png_sample(
    r: np.random.Generator, fresh: _Fresh, fresh_text: _Fresh
) -> tuple[Image.Image, str, str, dict[str, Any]]:
    """A PNG-worthy sample: a text image, or a small photo crop when no script font exists."""
    t = fresh_text(r, int(r.integers(1000)))
    if t is not None:
        return t.image, "text", t.caption, _text_fields(t)
    c = fresh(r)
    img = c.image.copy()
    img.thumbnail((400, 400))
    return img, "photo", c.caption, {}


def _broken(
    w: LabelWriter, plan: CorpusPlan, r: np.random.Generator, fresh: _Fresh, fresh_text: _Fresh, quality: _Fresh
) -> None:
    """Files `flywheel.imaging.decode` must reject, each labeled with the reason decode reports."""

    def any_caption() -> str:
        return PHOTOS[plan.photos[int(r.integers(len(plan.photos)))]].captions[0]

    for ext in plan.zero_byte:
        w.add(b"", ext, "junk", any_caption(), None, None, broken="zero_byte")
    for how in plan.not_image:
        data = V.not_image_text() if how == "html" else V.not_image_random(r, int(r.integers(2_000, 20_000)))
        w.add(data, "jpg", "junk", any_caption(), None, None, broken="not_image")
    for fmt in plan.truncated:
        fraction = float(r.uniform(0.3, 0.7))
        if fmt == "JPEG":
            c = fresh(r)
            data = V.encode(c.image, "JPEG", quality(r))
            w.add(V.truncated(data, fraction), "jpg", "photo", c.caption, c.image.size, "JPEG", broken="truncated")
        else:
            img, kind, caption, extra = _png_sample(r, fresh, fresh_text)
            w.add(
                V.truncated(V.encode(img, "PNG"), fraction),
                "png",
                kind,
                caption,
                img.size,
                "PNG",
                broken="truncated",
                **extra,
            )
    side = 60_000  # 3.6 gigapixels claimed; well past every limit, still a legal 16-bit JPEG size
    for fmt in plan.bombs:
        small = V.encode(Image.new("RGB", (64, 64), (128, 64, 32)), "JPEG", 80)
        data = V.png_bomb(side, side) if fmt == "PNG" else V.jpeg_bomb(small, side, side)
        w.add(data, _ext(fmt), "junk", any_caption(), (side, side), fmt, broken="decompression_bomb")
    for mode in plan.unsupported:
        c = fresh(r)
        gray = c.image.convert("L")
        gray.thumbnail((384, 384))
        arr = np.asarray(gray)
        data, fmt = (V.float_tiff(arr), "TIFF") if mode == "F" else (V.uint16_png(arr), "PNG")
        w.add(data, _ext(fmt), "photo", c.caption, gray.size, fmt, broken="unsupported_mode", mode=mode)


def _mislabeled_and_captions(
    w: LabelWriter, plan: CorpusPlan, r: np.random.Generator, fresh: _Fresh, fresh_text: _Fresh, quality: _Fresh
) -> None:
    """Decodable files whose extension lies, then clean photos whose caption sidecar is bad."""
    for fmt in plan.mislabeled:
        if fmt == "PNG":
            img, kind, caption, extra = _png_sample(r, fresh, fresh_text)
            w.add(V.encode(img, "PNG"), "jpg", kind, caption, img.size, "PNG", mislabeled=True, **extra)
        else:
            c = fresh(r)
            w.add(
                V.encode(c.image, "JPEG", quality(r)), "png", "photo", c.caption, c.image.size, "JPEG", mislabeled=True
            )
    seen: Counter[str] = Counter()
    for issue in plan.caption_issues:
        n = seen[issue]
        seen[issue] += 1
        choices = {"empty": EMPTY, "placeholder": PLACEHOLDERS, "garbled": GARBLED, "repetitive": REPETITIVE}
        caption = choices[issue][n % len(choices[issue])] if issue in choices else None
        c = fresh(r)
        w.add(V.encode(c.image, "JPEG", quality(r)), "jpg", "photo", caption, c.image.size, "JPEG", caption_issue=issue)


def main(argv: list[str] | None = None) -> int:
    """CLI: build the corpus and print a one-screen summary."""
    summary = (__doc__ or "").split("\n\n")[0]
    parser = argparse.ArgumentParser(prog="python -m corpus.build", description=summary)
    parser.add_argument("out", type=Path, help="output dir: images/ and labels.jsonl are written inside")
    parser.add_argument("--scale", type=int, default=1, help="multiplies photo crops and text images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overwrite", action="store_true", help="replace an existing OUT/images")
    parser.add_argument("--small", action="store_true", help="the ~50-file test plan (ignores --scale)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    try:
        plan = CorpusPlan.small() if args.small else None
        info = build_corpus(args.out, scale=args.scale, seed=args.seed, plan=plan, overwrite=args.overwrite)
    except (FileExistsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(
        f"wrote {info.n_samples} samples ({info.n_files} files, {info.total_bytes / 1e6:.1f} MB) to "
        f"{info.images_dir} in {time.perf_counter() - start:.1f}s; labels: {info.labels_path}"
    )
    print("kinds: " + ", ".join(f"{k}={v}" for k, v in info.counts.items()))
    print("labels: " + ", ".join(f"{k}={v}" for k, v in info.label_counts.items()))
    missing = " ".join(info.missing_scripts) or "none"
    print(f"scripts: {' '.join(info.scripts)} (layout {info.layout_engine}); missing: {missing}")
    for line in info.shaping_caveats:
        print(f"  note: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
