"""OCR backend on real renders in several scripts: exact text in, transcription, script and language out."""

from __future__ import annotations

import difflib
import shutil

import numpy as np
import pytest

from captioners.captioner import describe_ocr
from captioners.config import OcrConfig
from captioners.ocr import AutoOcr, OcrError, TesseractOcr, make_ocr, ocr_unavailable_reason, parse_tsv
from captioners.synth.corpus import SCRIPTS
from captioners.synth.render import render_pure
from flywheel.errors import UserError

pytestmark = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract CLI not installed")


def cer(truth: str, seen: str) -> float:
    a, b = "".join(truth.split()), "".join(seen.split())
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    edits = sum(max(i2 - i1, j2 - j1) for tag, i1, i2, j1, j2 in ops if tag != "equal")
    return edits / max(1, len(a))


@pytest.mark.parametrize(
    ("script", "text", "lang", "max_cer"),
    [
        ("Latn", "Fresh Coffee\nOPEN DAILY", "en", 0.0),
        ("Hans", "欢迎光临\n新鲜咖啡", "zh", 0.13),
        ("Cyrl", "Добро пожаловать", "ru", 0.0),
        ("Arab", "مرحبا بالعالم", "ar", 0.2),
    ],
)
def test_ocr_reads_rendered_scripts(script: str, text: str, lang: str, max_cer: float) -> None:
    sample = render_pure(SCRIPTS[script], np.random.default_rng(1), font_px=40, text=text)
    result = TesseractOcr().read(sample.image)
    assert cer(text, result.text) <= max_cer, (text, result.text)
    assert result.script == ("Hani" if script == "Hans" else script)
    assert result.lang == lang
    assert len(result.lines) == len(text.split("\n"))
    top = [line.y for line in result.lines]
    assert top == sorted(top)  # reading order: top to bottom
    for line in result.lines:  # boxes are in the stored image's pixels
        assert 0 <= line.x < sample.image.width and 0 <= line.y < sample.image.height
        assert 0.5 * 40 <= line.h <= 2.5 * 40
    caption = describe_ocr(result, *sample.image.size)
    assert all(f'"{ln}"' in caption for ln in result.text.split("\n"))


def test_blank_image_has_no_text() -> None:
    from PIL import Image

    result = TesseractOcr().read(Image.new("RGB", (300, 200), (240, 240, 240)))
    assert result.lines == [] and result.script is None and result.lang is None
    assert describe_ocr(result) == "No visible text."


def test_missing_binary_is_a_clear_error() -> None:
    from PIL import Image

    with pytest.raises(OcrError, match=r"ocr\.binary"):
        TesseractOcr(OcrConfig(binary="/nonexistent/tesseract")).read(Image.new("RGB", (64, 64)))


def test_parse_tsv_groups_words_and_drops_low_confidence() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
    rows = [
        "5\t1\t1\t1\t1\t1\t10\t10\t40\t20\t96\tHello",
        "5\t1\t1\t1\t1\t2\t60\t10\t50\t20\t94\tworld",
        "5\t1\t1\t1\t1\t3\t120\t10\t10\t20\t5\t~",
        "5\t1\t1\t1\t2\t1\t10\t40\t20\t20\t90\t欢迎",
        "5\t1\t1\t1\t2\t2\t35\t40\t20\t20\t90\t光临",
    ]
    lines = parse_tsv(header + "\n".join(rows), min_word_conf=30, scale=2.0)
    assert [ln.text for ln in lines] == ["Hello world", "欢迎光临"]
    assert (lines[0].x, lines[0].y, lines[0].w, lines[0].h) == (5, 5, 50, 10)


needs_rapidocr = pytest.mark.skipif(ocr_unavailable_reason() is not None, reason="rapidocr not installed")


def test_engine_choice() -> None:
    assert isinstance(make_ocr(OcrConfig(engine="tesseract")), TesseractOcr)
    with pytest.raises(UserError, match=r"ocr\.engine"):
        make_ocr(OcrConfig(engine="easyocr"))
    default = make_ocr(OcrConfig())
    assert isinstance(default, AutoOcr if ocr_unavailable_reason() is None else TesseractOcr)


@needs_rapidocr
def test_auto_reads_chinese_with_rapidocr_and_korean_with_tesseract() -> None:
    auto = AutoOcr()
    zh = auto.read(render_pure(SCRIPTS["Hans"], np.random.default_rng(1), font_px=40, text="欢迎光临\n新鲜咖啡").image)
    assert (zh.text, zh.script, zh.lang, zh.model) == ("欢迎光临\n新鲜咖啡", "Hani", "zh", "ocr:rapidocr")
    assert [line.y for line in zh.lines] == sorted(line.y for line in zh.lines)
    ko = auto.read(render_pure(SCRIPTS["Kore"], np.random.default_rng(1), font_px=40, text="안녕하세요").image)
    assert ko.engine == "tesseract" and ko.script == "Kore"  # rapidocr's recogniser has no hangul


@needs_rapidocr
def test_auto_gives_a_photo_no_text_without_asking_tesseract() -> None:
    import skimage.data
    from PIL import Image

    auto = AutoOcr(OcrConfig(binary="/nonexistent/tesseract"))  # tesseract would raise if it were called
    result = auto.read(Image.fromarray(skimage.data.coffee()))
    assert result.lines == [] and result.engine == "rapidocr"
