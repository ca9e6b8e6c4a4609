"""The rotation benches' variant pieces: the fine-tune bench's augmenter and the OCR line-orientation vote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from bench.rotation_finetune import Augmenter
from bench.rotation_ocr import page_rotation
from flywheel.models.ocr import RapidOcr, unavailable_reason

FONT = Path("/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf")


class _Trunk:
    """Stands in for the backbone: `Augmenter.one` (the crop, flip and contrast) never calls the model."""


def test_augmenter_crops_to_the_view_and_varies() -> None:
    rng = np.random.default_rng(0)
    crop = rng.integers(0, 256, (224, 224, 3), dtype=np.uint8)
    aug = Augmenter(_Trunk(), [crop], view=160, seed=1)  # type: ignore[arg-type]
    a, b = aug.one(crop), aug.one(crop)
    assert a.shape == (160, 160, 3) and a.dtype == np.uint8
    assert not np.array_equal(a, b)  # a fresh crop, flip and contrast each call
    again = Augmenter(_Trunk(), [crop], view=160, seed=1).one(crop)  # type: ignore[arg-type]
    assert np.array_equal(a, again)  # seeded: a bench run is reproducible


@pytest.mark.skipif(unavailable_reason() is not None, reason=f"rapidocr: {unavailable_reason()}")
def test_ocr_vote_reads_a_quarter_turned_page() -> None:
    if not FONT.is_file():
        pytest.skip(f"font {FONT} is not installed (fonts-noto-core)")
    font = ImageFont.truetype(str(FONT), 40)
    page = Image.new("RGB", (640, 640), (245, 240, 228))
    draw = ImageDraw.Draw(page)
    for row, line in enumerate(("Fresh Coffee Every Morning", "Open Daily From Seven", "Books And Maps Upstairs")):
        draw.text((30, 60 + 120 * row), line, font=font, fill=(30, 30, 40))
    ocr = RapidOcr(threads=1)
    rgb = np.asarray(page)
    upright, lines = page_rotation(ocr, rgb)
    assert lines >= 3 and upright == 0
    turned, _ = page_rotation(ocr, np.rot90(rgb, k=-1))  # clockwise a quarter: the vote says 90
    assert turned == 1
