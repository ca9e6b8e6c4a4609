"""Text in the image: how much, how small, what it says, its script and the Qwen-Image language split.

Why: the Qwen-Image reports split data by language (English, Chinese, Other, Non-text) and filter it with an
intensive-text and a small-character filter; both need a text detector, and the split needs recognition.
The engine is `flywheel.models.ocr.RapidOcr` (the PP-OCR detector, direction classifier and recogniser that
the rapidocr wheel ships as ONNX; measured against tesseract in `bench/ocr_compare.py`, `docs/text.md`).

Why it decodes by itself: small characters need more pixels than the shared 256 px scoring view, and a fixed
canvas large enough for them would cost megabytes per sample between the decode tasks and the actor. So the
scorer sets `wants_images`: the actor decodes each row's stored bytes (with the same bounded decoder and
limits) so that the longer side is at most `text.max_side`, and `prepare` only marks rows as decodable.

Columns are in the stored image's scale: heights are converted from the OCR view by the ratio of the stored
longer side to the view's. A character height is the detected line box's short side divided by
`LINE_BOX_PER_EM` (the detector's boxes hold the line with a margin; the ratio of box height to font size was
measured on Noto renders, see the bench), so it approximates the font's em size in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from PIL import Image

from filters.base import ModelConfigError, ModelScorer
from filters.config import ScoringConfig, TextConfig
from flywheel.errors import UserError
from flywheel.imaging import Decoded, DecodeLimits, decode
from flywheel.models.ocr import (
    OcrPage,
    OcrUnavailable,
    RapidOcr,
    dominant_script,
    language_split,
    text_area_fraction,
    unavailable_reason,
)
from flywheel.schema import Column

# Detected line box height / font em size: median over the tune pure renders of bench/ocr_compare.py --tune.
LINE_BOX_PER_EM = 1.34
LANGUAGES = ("en", "zh", "other", "none")
UNREADABLE = "unknown"  # text_script of lines the detector found and the shipped recogniser cannot read
COMMON = "common"  # text_script of text with no letters (digits, punctuation), as Unicode names that script


def ocr_view(data: bytes, max_side: int, limits: DecodeLimits) -> Decoded:
    """The image decoded (bounded, EXIF-transposed) with its longer side at most `max_side`."""
    decoded = decode(data, max_side, limits)
    if decoded.rgb is None:
        return decoded
    h, w = decoded.rgb.shape[:2]
    if max(h, w) > max_side:
        ratio = max_side / max(h, w)
        size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
        decoded.rgb = np.asarray(Image.fromarray(decoded.rgb).resize(size, Image.Resampling.BILINEAR))
    return decoded


def page_columns(page: OcrPage, view_hw: tuple[int, int], stored_long_side: int) -> dict[str, Any]:
    """One row's column values from an OCR page of a view of `view_hw` pixels."""
    h, w = view_hw
    scale = stored_long_side / max(h, w) if stored_long_side > 0 else 1.0
    heights = sorted(line.height * scale / LINE_BOX_PER_EM for line in page.lines)
    text = page.text
    script = None
    if page.lines:
        script = (dominant_script(text) or COMMON) if page.readable else UNREADABLE
    return {
        "text_area_fraction": text_area_fraction(page.lines, h, w),
        "text_lines": len(page.lines),
        "text_chars": sum(1 for ch in text if not ch.isspace()),
        "text_char_height_min": heights[0] if heights else None,
        "text_char_height_median": float(np.median(heights)) if heights else None,
        "ocr_text": text,
        "text_script": script,
        "text_language": language_split(text, script, bool(page.lines)),
    }


class TextScorer(ModelScorer):
    """Text detection + recognition (rapidocr's PP-OCR ONNX models), gated by the detector's confidence."""

    name: ClassVar[str] = "text"
    config_section: ClassVar[str | None] = "text"
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "text_area_fraction",
            pa.float32(),
            "fraction",
            "Text intensity: fraction of the image covered by detected text line boxes (0 when none).",
            owner="text",
        ),
        Column("text_lines", pa.int32(), "count", "Detected text lines (0 when none).", owner="text"),
        Column(
            "text_chars",
            pa.int32(),
            "count",
            "Recognised characters, whitespace excluded (0 when the lines are in a script the model cannot read).",
            owner="text",
        ),
        Column(
            "text_char_height_min",
            pa.float32(),
            "px",
            "Smallest character height (about the em size) among the detected lines, in stored-image pixels; "
            "null when there is no text. The small-character filter reads it.",
            owner="text",
        ),
        Column(
            "text_char_height_median",
            pa.float32(),
            "px",
            "Median character height of the detected lines, in stored-image pixels; null when there is no text.",
            owner="text",
        ),
        Column(
            "ocr_text",
            pa.string(),
            "text",
            "Recognised text, one line per detected line in reading order ('' when none was read).",
            owner="text",
        ),
        Column(
            "text_script",
            pa.string(),
            "label",
            "Dominant script of the recognised text (latin, han, japanese, hangul, cyrillic, greek, arabic, "
            "devanagari, ...); 'unknown' for lines the recogniser cannot read; null when there is no text.",
            owner="text",
        ),
        Column(
            "text_language",
            pa.string(),
            "label",
            "Language split of Qwen-Image: en, zh, other, or none (no text detected).",
            owner="text",
        ),
    )
    view_short_side: ClassVar[int] = 0  # decodes the stored bytes itself (see the module docstring)
    input_shape: ClassVar[tuple[int, ...]] = (1,)
    wants_images: ClassVar[bool] = True
    uses_gpu: ClassVar[bool] = True
    default_on: ClassVar[bool] = False  # about 0.1-0.5 s per image on one CPU: opt in with --filters

    def __init__(
        self, cfg: TextConfig | None = None, limits: DecodeLimits | None = None, threads: int | None = None
    ) -> None:
        super().__init__()
        self.cfg = cfg or TextConfig()
        if self.cfg.device not in ("auto", "cuda", "cpu"):
            raise UserError(f"text.device must be auto, cuda or cpu, got {self.cfg.device!r}")
        if self.cfg.batch_size < 1 or self.cfg.max_side < 32:
            raise UserError(f"text.batch_size must be >= 1 and text.max_side >= 32, got {self.cfg}")
        self.limits = limits or DecodeLimits()
        self.threads = threads
        self._ocr: RapidOcr | None = None

    @classmethod
    def from_config(cls, cfg: ScoringConfig) -> TextScorer:
        return cls(cfg.text, cfg.limits)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_ocr"] = None  # onnxruntime sessions are per process; each actor loads its own
        return state

    def available(self) -> str | None:
        reason = unavailable_reason()
        return None if reason is None else f"text not computed: {reason}"

    def load(self) -> None:
        if self._ocr is not None:
            return
        message = self.available()
        if message is not None:
            raise ModelConfigError(message)
        ocr = RapidOcr(
            threads=self.threads or 1,
            det_min=self.cfg.det_min,
            max_line_frac=self.cfg.max_line_frac,
            line_min=self.cfg.line_min,
            read_min=self.cfg.read_min,
            max_side=self.cfg.max_side,
            batch_size=self.cfg.batch_size,
            use_gpu=self._use_gpu(),
        )
        try:
            ocr.load()
        except OcrUnavailable as exc:
            raise ModelConfigError(f"text not computed: {exc}") from None
        self._ocr = ocr

    def _use_gpu(self) -> bool:
        if self.cfg.device == "cpu":
            return False
        import onnxruntime as ort

        return "CUDAExecutionProvider" in ort.get_available_providers()

    def prepare(self, decoded: Decoded) -> np.ndarray:
        if decoded.rgb is None:
            raise ValueError("prepare() needs a decoded view; broken samples must be skipped by the caller")
        return np.ones(self.input_shape, dtype=np.uint8)  # a marker: the actor decodes the bytes itself

    def score(
        self, inputs: np.ndarray, captions: list[str | None], images: list[bytes] | None = None
    ) -> dict[str, Sequence[Any]]:
        if images is None or len(images) != len(inputs):
            raise ValueError("the text scorer needs the rows' stored bytes (wants_images)")
        return self.score_images(images)

    def score_images(self, images: Sequence[bytes | None]) -> dict[str, list[Any]]:
        """Columns for a batch of stored image files (None or undecodable files get null columns)."""
        self.load()
        assert self._ocr is not None
        out: dict[str, list[Any]] = {c.name: [None] * len(images) for c in self.columns}
        views = [ocr_view(data, self.cfg.max_side, self.limits) if data else Decoded() for data in images]
        ok = [i for i, v in enumerate(views) if v.rgb is not None]
        pages = self._ocr.read_batch([views[i].rgb for i in ok])  # type: ignore[misc]
        for i, page in zip(ok, pages, strict=True):
            v = views[i]
            assert v.rgb is not None
            stored = max(v.width or 0, v.height or 0)
            for name, value in page_columns(page, v.rgb.shape[:2], stored).items():
                out[name][i] = value
        return out
