"""Label schema, plan and writer of the demo corpus (corpus.build builds with them).

`OUT/labels.jsonl` has one JSON object per SAMPLE file (edit sources are not samples and have
no row), sorted by file name. Every row has these keys:

  file              path relative to OUT/images (flat: img_NNNN.ext, numbered in generation
                    order, so an original always sorts before its copies)
  kind              "photo" | "text" | "blank" | "edit" (TI2I target) | "junk" (no image content)
  broken            null | "zero_byte" | "not_image" | "truncated" | "decompression_bomb" |
                    "unsupported_mode": exactly the reason flywheel.imaging.decode reports
  mislabeled        the extension does not match the real format (the file still decodes)
  rotated           0 | 90 | 180 | 270: clockwise degrees applied to the pixels of an upright image
  exif_orientation  null | 1..8: EXIF tag present; the pixels are stored so that it displays upright
  exact_dup_of      null | file whose bytes this file repeats
  near_dup_of       null | file this is a resized+recompressed or 2-4% re-cropped copy of
  blank             flat colour, or flat colour plus a few stray pixels / one faint line
  tiny              min(width, height) < 64 (never set on broken files)
  caption_issue     null | "missing" (no .txt) | "empty" | "placeholder" | "garbled" | "repetitive"
  script, text      text images only: ISO 15924 code and the exact drawn text ("\n" between lines)
  task, caption     "T2I" | "TI2I"; the caption the folder ingest will read (TI2I: the instruction)
  format, width, height   real container format and stored (header) size; null when unknown
  derived_from      null | file this one was made from (dups, rotations, edit source)

Optional keys: text rows add lang, font, shaped (false when a complex script had to be drawn
without raqm); near dups add phash_distance (the dedup pHash distance to the original, after
flywheel's decode); unsupported_mode rows add mode; edits add edit_source, instruction and
description. Blank images are perceptual duplicates of each other by nature; that is not
labeled (near_dup_of stays null for them).
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corpus.photos import PHOTOS


@dataclass(frozen=True)
class CorpusPlan:
    """How many of each thing to write. `default(scale)` is the demo; `small()` is for unit tests."""

    photos: tuple[str, ...] = tuple(PHOTOS)
    crops_per_photo: int = 6
    texts_per_script: int = 3
    max_side: int = 1024
    exact_dups: int = 6
    near_dups_resized: int = 4
    near_dups_cropped: int = 4
    rotations: tuple[int, ...] = (90, 180, 270, 90, 180, 270)
    exif_orientations: tuple[int, ...] = (6, 8, 3, 6)
    blank_flat: int = 4
    blank_near: int = 4
    tiny_sides: tuple[int, ...] = (16, 24, 32, 40, 48)
    zero_byte: tuple[str, ...] = ("jpg", "png")
    not_image: tuple[str, ...] = ("html", "random", "random")
    truncated: tuple[str, ...] = ("JPEG", "PNG", "JPEG", "PNG")
    bombs: tuple[str, ...] = ("PNG", "JPEG")
    unsupported: tuple[str, ...] = ("F", "I;16")
    mislabeled: tuple[str, ...] = ("PNG", "PNG", "JPEG")  # the real format; the extension is the other one
    caption_issues: tuple[str, ...] = (
        "missing",
        "missing",
        "empty",
        "empty",
        "placeholder",
        "placeholder",
        "placeholder",
        "garbled",
        "garbled",
        "repetitive",
        "repetitive",
    )
    edits: int = 4

    @classmethod
    def default(cls, scale: int = 1) -> CorpusPlan:
        """`scale` multiplies only photo crops and text images (the bulk), for 1x-vs-4x benchmarks."""
        if scale < 1:
            raise ValueError("scale must be >= 1")
        return cls(crops_per_photo=6 * scale, texts_per_script=3 * scale)

    @classmethod
    def small(cls) -> CorpusPlan:
        """About 50 samples, at least one of every label kind, sides <= 512: builds in ~1 s for tests."""
        return cls(
            photos=("astronaut", "coffee", "chelsea", "camera"),
            crops_per_photo=2,
            texts_per_script=1,
            max_side=512,
            exact_dups=2,
            near_dups_resized=1,
            near_dups_cropped=1,
            rotations=(90, 180, 270),
            exif_orientations=(6, 8),
            blank_flat=1,
            blank_near=1,
            tiny_sides=(24, 40),
            zero_byte=("jpg",),
            not_image=("html", "random"),
            truncated=("JPEG", "PNG"),
            mislabeled=("PNG",),
            caption_issues=("missing", "empty", "placeholder", "garbled", "repetitive"),
            edits=1,
        )


@dataclass
class CorpusInfo:
    """Where the corpus went and what is in it (counts are per label row, i.e. per sample)."""

    images_dir: Path
    labels_path: Path
    counts: dict[str, int]  # samples per kind
    label_counts: dict[str, int]  # e.g. "broken:truncated", "caption_issue:missing", "rotated:90"
    n_samples: int
    n_files: int  # everything under images_dir: samples, edit sources and sidecars
    total_bytes: int
    seed: int
    scale: int
    scripts: list[str] = field(default_factory=list)
    missing_scripts: list[str] = field(default_factory=list)
    layout_engine: str = ""
    shaping_caveats: list[str] = field(default_factory=list)


class LabelWriter:
    """Writes sample files and sidecars into one folder and keeps their label rows.

    Files are named `img_NNNN.ext` in generation order, so originals sort before their copies
    and a "keep the first of a duplicate group" rule keeps the original.
    """

    def __init__(self, images_dir: Path) -> None:
        self.dir = images_dir
        self.labels: list[dict[str, Any]] = []
        self._n = 0

    def _name(self, ext: str) -> str:
        self._n += 1
        return f"img_{self._n:04d}.{ext}"

    def source(self, data: bytes, ext: str) -> str:
        """An edit source: an image file with no caption and no label row (not a sample)."""
        name = self._name(ext)
        (self.dir / name).write_bytes(data)
        return name

    def add(
        self,
        data: bytes,
        ext: str,
        kind: str,
        caption: str | None,
        size: tuple[int, int] | None,
        fmt: str | None,
        write_caption: bool = True,
        **fields: Any,
    ) -> str:
        """Write one sample (+ its .txt unless the caption is None or `write_caption` is False)."""
        name = self._name(ext)
        (self.dir / name).write_bytes(data)
        if caption is not None and write_caption:
            (self.dir / name).with_suffix(".txt").write_text(caption, encoding="utf-8")
        width, height = size if size else (None, None)
        label: dict[str, Any] = {
            "file": name,
            "kind": kind,
            "broken": None,
            "mislabeled": False,
            "rotated": 0,
            "exif_orientation": None,
            "exact_dup_of": None,
            "near_dup_of": None,
            "blank": False,
            "tiny": False,
            "caption_issue": None,
            "script": None,
            "text": None,
            "task": "T2I",
            "caption": caption,
            "format": fmt,
            "width": width,
            "height": height,
            "derived_from": None,
        }
        label.update(fields)
        if width and height and label["broken"] is None:
            label["tiny"] = min(width, height) < 64
        self.labels.append(label)
        return name

    def finish(
        self,
        labels_path: Path,
        *,
        seed: int,
        scale: int,
        scripts: list[str],
        missing: list[str],
        layout: str,
        caveats: list[str],
    ) -> CorpusInfo:
        """Write labels.jsonl (sorted by file) and count what the folder holds."""
        labels = sorted(self.labels, key=lambda lab: lab["file"])
        with labels_path.open("w", encoding="utf-8") as fh:
            for lab in labels:
                fh.write(json.dumps(lab, ensure_ascii=False) + "\n")
        files = [p for p in self.dir.rglob("*") if p.is_file()]
        kinds = Counter(lab["kind"] for lab in labels)
        return CorpusInfo(
            images_dir=self.dir,
            labels_path=labels_path,
            counts=dict(sorted(kinds.items())),
            label_counts=count_labels(labels),
            n_samples=len(labels),
            n_files=len(files),
            total_bytes=sum(p.stat().st_size for p in files),
            seed=seed,
            scale=scale,
            scripts=scripts,
            missing_scripts=missing,
            layout_engine=layout,
            shaping_caveats=caveats,
        )


def count_labels(labels: list[dict[str, Any]]) -> dict[str, int]:
    """Counts per label value ("broken:truncated", "rotated:90", "blank", ...), for summaries."""
    counted: Counter[str] = Counter()
    for lab in labels:
        for key in ("broken", "caption_issue", "script", "exif_orientation"):
            if lab[key] is not None:
                counted[f"{key}:{lab[key]}"] += 1
        if lab["rotated"]:
            counted[f"rotated:{lab['rotated']}"] += 1
        for key in ("mislabeled", "blank", "tiny"):
            counted[key] += bool(lab[key])
        counted["exact_dup"] += lab["exact_dup_of"] is not None
        counted["near_dup"] += lab["near_dup_of"] is not None
        counted[f"task:{lab['task']}"] += 1
    return dict(sorted(counted.items()))
