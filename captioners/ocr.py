"""Offline OCR: the Debian `tesseract` CLI, rapidocr's PP-OCR models, or both (`ocr.engine`, default `auto`).

`make_ocr` picks the reader. `auto` reads with rapidocr (`flywheel.models.ocr`, shared with the text filter) and
falls back to tesseract only where rapidocr's detector found lines its recogniser cannot read; the numbers
behind that choice are in docs/text.md (`bench/ocr_compare.py`). The rest of this docstring is about tesseract.

Tesseract: lines in reading order, boxes, script and language.

Why the CLI and not pytesseract: one subprocess per image with a hard timeout, TSV output we
parse ourselves, and no extra wrapper dependency. With `languages: auto` an image is read
twice: a probe with every installed pack finds the dominant script from the characters it
returns, then the script's own pack(s) re-read it (a single pack is both faster per pass and
more accurate than the union, which confuses similar glyphs across scripts). Images with a
short longer side are upscaled 2x first, because tesseract needs ~20 px x-height.
"""

from __future__ import annotations

import csv
import io
import itertools
import os
import subprocess
import time
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from captioners.config import OcrConfig
from captioners.script import TESSERACT_PACKS, char_script, detect_language, dominant_script, script_counts
from flywheel.errors import RunFailed, UserError
from flywheel.models.ocr import OcrPage, OcrUnavailable, RapidOcr, TextLine
from flywheel.models.ocr import unavailable_reason as ocr_unavailable_reason

# Scripts where tesseract's word boundaries are not the text's spaces.
_NO_SPACE = frozenset({"Hani", "Hira", "Kana"})
_GAP_SCRIPTS = frozenset({"Thai", "Hang"})


# One thread per tesseract: parallelism comes from one process per Ray actor, not from OpenMP inside each.
_ENV = {**os.environ, "OMP_THREAD_LIMIT": "1"}


class OcrError(RunFailed):
    """Tesseract could not read the image (missing binary, timeout, crash); the message says which."""


@dataclass(frozen=True)
class OcrLine:
    text: str
    x: int
    y: int
    w: int
    h: int
    conf: float

    def as_row(self) -> dict[str, object]:
        return {"text": self.text, "x": self.x, "y": self.y, "w": self.w, "h": self.h, "conf": self.conf}


@dataclass
class OcrResult:
    lines: list[OcrLine] = field(default_factory=list)
    script: str | None = None
    lang: str | None = None
    tesseract_lang: str = ""
    seconds: float = 0.0
    engine: str = "tesseract"

    @property
    def model(self) -> str:
        """The caption's model name: `ocr:tesseract-<packs>` or `ocr:rapidocr`."""
        return f"ocr:tesseract-{self.tesseract_lang}" if self.engine == "tesseract" else f"ocr:{self.engine}"

    @property
    def text(self) -> str:
        return "\n".join(line.text for line in self.lines)

    @property
    def mean_conf(self) -> float:
        chars = sum(len(line.text) for line in self.lines)
        return sum(line.conf * len(line.text) for line in self.lines) / chars if chars else 0.0


class TesseractOcr:
    """Reads one image into an OcrResult."""

    def __init__(self, cfg: OcrConfig | None = None) -> None:
        self.cfg = cfg or OcrConfig()

    def read(self, image: Image.Image) -> OcrResult:
        started = time.perf_counter()
        base = image.convert("RGB")
        first = 2.0 if max(base.size) < self.cfg.upscale_below_px else 1.0
        # Automatic page segmentation misses some short isolated words, and very large glyphs (posters,
        # banners) defeat it as small ones do: when a pass sees nothing, retry as one uniform block (psm 6),
        # then at half size (measured on the demo's sign renders). Text-free photos pay for all three passes.
        attempts = [(first, self.cfg.psm)]
        if self.cfg.psm != 6:
            attempts.append((first, 6))
        if min(base.size) >= 256:
            attempts.append((0.5, 6))
        result = OcrResult(tesseract_lang=self.cfg.languages)
        for scale, psm in attempts:
            result = self._read_at(base, scale, psm)
            if len(result.text.strip()) >= 2:
                break
        result.script = dominant_script(result.text)
        result.lang = detect_language(result.text, result.script) if result.text else None
        result.seconds = time.perf_counter() - started
        return result

    def _read_at(self, base: Image.Image, scale: float, psm: int) -> OcrResult:
        view = base
        if scale != 1.0:
            view = base.resize(
                (max(1, round(base.width * scale)), max(1, round(base.height * scale))), Image.Resampling.LANCZOS
            )
        png = io.BytesIO()
        view.save(png, format="PNG")
        data = png.getvalue()
        if self.cfg.languages != "auto":
            return self._read(data, self.cfg.languages, scale, psm)
        probe = self._read(data, self.cfg.probe_languages, scale, psm)
        candidates = [self._read(data, pack, scale, psm) for pack in candidate_packs(probe.text)] or [probe]
        # Most confident read wins, penalised when it reads much less than the probe saw; ties go to the
        # earlier (more likely) pack, e.g. chi_sim before chi_tra.
        return max(
            candidates,
            key=lambda r: (
                round(r.mean_conf * min(1.0, len(r.text) / max(1, len(probe.text))) / 5),
                -candidates.index(r),
            ),
        )

    def _read(self, png: bytes, langs: str, scale: float, psm: int) -> OcrResult:
        cmd = [
            self.cfg.binary,
            "stdin",
            "stdout",
            "-l",
            langs,
            "--psm",
            str(psm),
            "-c",
            "preserve_interword_spaces=1",
            "tsv",
        ]
        try:
            proc = subprocess.run(
                cmd, input=png, capture_output=True, timeout=self.cfg.timeout_s, check=False, env=_ENV
            )
        except FileNotFoundError as exc:
            raise OcrError(
                f"tesseract binary {self.cfg.binary!r} not found: install tesseract-ocr "
                "(apt-get install tesseract-ocr) or set ocr.binary"
            ) from exc
        except subprocess.TimeoutExpired as exc:
            raise OcrError(f"tesseract timed out after {self.cfg.timeout_s}s (ocr.timeout_s)") from exc
        if proc.returncode != 0:
            raise OcrError(
                f"tesseract -l {langs} failed ({proc.returncode}): "
                f"{proc.stderr.decode('utf-8', 'replace').strip()[-300:]}"
            )
        lines = parse_tsv(proc.stdout.decode("utf-8", "replace"), self.cfg.min_word_conf, scale)
        kept = [ln for ln in lines if ln.conf >= self.cfg.min_line_conf and sum(ch.isalnum() for ch in ln.text) >= 2]
        return OcrResult(lines=kept, tesseract_lang=langs)


# Scripts the all-packs probe confuses with each other on a few glyphs (measured with bench/ocr_cer.py).
_CONFUSABLE = {
    "Deva": ("Gujr", "Beng"),
    "Gujr": ("Deva",),
    "Beng": ("Deva",),
    "Hani": ("Jpan",),
    "Jpan": ("Hani",),
    "Taml": ("Thai",),
    "Thai": ("Taml",),
}
_CJK = ("Hani", "Jpan", "Kore")


def candidate_packs(probe_text: str) -> list[str]:
    """Tesseract packs to re-read with: the probe's two main scripts; for short reads (a sign of a few glyphs,
    where the probe often reads CJK as Thai, Bengali or Latin, and Gujarati as Devanagari) also their
    confusable scripts and CJK."""
    counts = script_counts(probe_text)
    if counts.get("Hira") or counts.get("Kana"):
        counts["Jpan"] += counts.pop("Hira", 0) + counts.pop("Kana", 0)
    if counts.get("Hang"):
        counts["Kore"] += counts.pop("Hang")
    scripts = [s for s, _ in counts.most_common(2)]
    if sum(counts.values()) < 12:  # on longer text the probe's script is right (and confusables read it worse)
        for script in list(scripts):
            scripts += _CONFUSABLE.get(script, ())
        scripts += _CJK
    packs = [p for s in dict.fromkeys(scripts) for p in TESSERACT_PACKS.get(s, ())]
    return list(dict.fromkeys(packs))


def join_words(words: list[tuple[str, int, int, int, int, float]]) -> str:
    """Join a line's words. Tesseract splits Chinese/Japanese, Thai and sometimes hangul into pseudo-words:
    Han and kana get no spaces (the scripts use none); Thai and hangul keep a space only where the ink gap
    is at least 0.3 median word heights wide, as a real space is (measured on Noto renders)."""
    heights = sorted(w[4] for w in words)
    unit = heights[len(heights) // 2]
    text = words[0][0]
    for prev, word in itertools.pairwise(words):
        a, b = char_script(prev[0][-1]), char_script(word[0][0])
        gap = word[1] - (prev[1] + prev[3])
        glued = (a in _NO_SPACE and b in _NO_SPACE) or (a in _GAP_SCRIPTS and b in _GAP_SCRIPTS and gap < 0.3 * unit)
        text += word[0] if glued else " " + word[0]
    return text


def parse_tsv(tsv: str, min_word_conf: float, scale: float = 1.0) -> list[OcrLine]:
    """Group tesseract's word rows (level 5) into lines, in tesseract's reading order (block, paragraph, line)."""
    lines: dict[tuple[int, int, int], list[tuple[str, int, int, int, int, float]]] = {}
    order: list[tuple[int, int, int]] = []
    for row in csv.DictReader(io.StringIO(tsv), delimiter="\t", quoting=csv.QUOTE_NONE):
        if row.get("level") != "5":
            continue
        text = (row.get("text") or "").strip()
        conf = float(row.get("conf") or -1)
        if not text or conf < min_word_conf:
            continue
        key = (int(row["block_num"]), int(row["par_num"]), int(row["line_num"]))
        if key not in lines:
            lines[key] = []
            order.append(key)
        lines[key].append((text, int(row["left"]), int(row["top"]), int(row["width"]), int(row["height"]), conf))
    out = []
    for key in order:
        words = lines[key]
        x0 = min(w[1] for w in words)
        y0 = min(w[2] for w in words)
        x1 = max(w[1] + w[3] for w in words)
        y1 = max(w[2] + w[4] for w in words)
        text = join_words(words)
        conf = sum(w[5] * len(w[0]) for w in words) / max(1, sum(len(w[0]) for w in words))
        out.append(
            OcrLine(
                text,
                round(x0 / scale),
                round(y0 / scale),
                round((x1 - x0) / scale),
                round((y1 - y0) / scale),
                round(conf, 1),
            )
        )
    return out


class RapidOcrReader:
    """rapidocr's PP-OCR models (`flywheel.models.ocr.RapidOcr`, detector-gated) read into an OcrResult."""

    def __init__(self, cfg: OcrConfig | None = None) -> None:
        self.cfg = cfg or OcrConfig()
        try:
            self.engine = RapidOcr(threads=1)
            self.engine.load()  # once, before the caption threads share it (onnxruntime runs are thread-safe)
        except OcrUnavailable as exc:
            raise UserError(f"ocr.engine=rapidocr cannot run: {exc} (or set ocr.engine: tesseract)") from None

    def read_page(self, image: Image.Image) -> OcrPage:
        return self.engine.read(np.asarray(image.convert("RGB")))

    def result(self, page: OcrPage, started: float) -> OcrResult:
        lines = [_ocr_line(line) for line in page.lines if line.text]
        result = OcrResult(lines=lines, engine="rapidocr")
        result.script = dominant_script(result.text)
        result.lang = detect_language(result.text, result.script) if result.text else None
        result.seconds = time.perf_counter() - started
        return result

    def read(self, image: Image.Image) -> OcrResult:
        started = time.perf_counter()
        return self.result(self.read_page(image), started)


class AutoOcr:
    """rapidocr first; tesseract only for images whose detected lines rapidocr's recogniser cannot read.

    The detector is the gate: an image with no detected line gets no text and never reaches tesseract, which
    on photos "reads" texture as stray marks (34 of 73 demo photos got text from it, see docs/captioners.md).
    """

    def __init__(self, cfg: OcrConfig | None = None) -> None:
        self.cfg = cfg or OcrConfig()
        self.rapid = RapidOcrReader(self.cfg)
        self.tesseract = TesseractOcr(self.cfg)

    def read(self, image: Image.Image) -> OcrResult:
        started = time.perf_counter()
        page = self.rapid.read_page(image)
        if page.readable or not page.lines:
            return self.rapid.result(page, started)
        result = self.tesseract.read(image)
        result.seconds = time.perf_counter() - started
        return result


OcrReader = TesseractOcr | RapidOcrReader | AutoOcr
ENGINES = ("auto", "rapidocr", "tesseract")


def make_ocr(cfg: OcrConfig) -> OcrReader:
    """The reader `ocr.engine` names; `auto` falls back to tesseract alone where rapidocr is not installed."""
    if cfg.engine not in ENGINES:
        raise UserError(f"ocr.engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    if cfg.engine == "tesseract" or (cfg.engine == "auto" and ocr_unavailable_reason() is not None):
        return TesseractOcr(cfg)
    return RapidOcrReader(cfg) if cfg.engine == "rapidocr" else AutoOcr(cfg)


def _ocr_line(line: TextLine) -> OcrLine:
    xs = [x for x, _ in line.box]
    ys = [y for _, y in line.box]
    x0, y0 = round(min(xs)), round(min(ys))
    return OcrLine(line.text, x0, y0, round(max(xs)) - x0, round(max(ys)) - y0, round(100 * line.rec_score, 1))
