import io

import cv2
import numpy as np
import pytest
from PIL import Image

from corpus.photo_sets import load_photo
from filters.base import SampleBatch
from filters.jpeg_quality import JpegQualityScorer, _mean_steps, blockiness, estimate_quality, ijg_tables
from flywheel.imaging import decode
from tests.images import encode


def _photo() -> np.ndarray:
    return load_photo("chelsea")[:256, :320]


def _batch(items: list[bytes]) -> SampleBatch:
    return SampleBatch(
        ids=[str(i) for i in range(len(items))],
        images=items,
        captions=[None] * len(items),
        decoded=[decode(b) for b in items],
    )


def _cv2_jpeg(rgb: np.ndarray, q: int) -> bytes:
    ok, enc = cv2.imencode(".jpg", rgb[..., ::-1], [int(cv2.IMWRITE_JPEG_QUALITY), q])
    assert ok
    return enc.tobytes()


def _tables(data: bytes) -> dict[int, list[int]]:
    with Image.open(io.BytesIO(data)) as img:
        return dict(img.quantization)


@pytest.mark.parametrize("q", [10, 25, 50, 75, 90, 95])
def test_quality_within_5_for_pillow_and_opencv(q: int) -> None:
    rgb = _photo()
    assert abs(estimate_quality(_tables(encode(rgb, quality=q))) - q) <= 5
    assert abs(estimate_quality(_tables(_cv2_jpeg(rgb, q))) - q) <= 5


def test_columns_null_for_png_and_broken_and_png_resave_of_bad_jpeg_is_blocky() -> None:
    rgb = _photo()
    with Image.open(io.BytesIO(encode(rgb, quality=10))) as img:
        resaved = encode(np.asarray(img.convert("RGB")), "PNG")
    items = [encode(rgb, quality=5), encode(rgb, "PNG"), resaved, b"not an image"]
    out = JpegQualityScorer()(_batch(items))
    assert out["jpeg_quality"][0] == 5
    assert out["jpeg_quality"][1:] == [None, None, None]
    assert out["jpeg_blockiness"][1] < 1.3 <= out["jpeg_blockiness"][2]
    assert out["jpeg_blockiness"][3] is None
    assert out["jpeg_double_compressed"][1:] == [None, None, None]


def test_double_compression_low_then_high_quality_is_flagged() -> None:
    rgb = _photo()
    with Image.open(io.BytesIO(encode(rgb, quality=10))) as img:
        twice = encode(np.asarray(img.convert("RGB")), quality=95)
    out = JpegQualityScorer()(_batch([encode(rgb, quality=95), twice]))
    assert out["jpeg_quality"] == [95, 95]  # the tables only see the last pass
    assert out["jpeg_double_compressed"] == [False, True]


def test_blockiness_is_one_for_flat_and_tiny_is_null() -> None:
    assert blockiness(np.full((64, 64), 128, np.uint8)) == pytest.approx(1.0)
    assert blockiness(np.zeros((8, 8), np.uint8)) is None


def test_the_integer_step_sums_equal_the_float32_definition_bit_for_bit():
    """The fast path must reproduce the stored column values of the float32 definition exactly."""
    rng = np.random.default_rng(3)
    planes = [rng.integers(0, 256, shape, dtype=np.uint8) for shape in ((32, 32), (33, 47), (700, 41), (45, 900))]
    planes += [np.zeros((40, 64), np.uint8), np.asarray(Image.fromarray(_photo()).convert("L"))]
    for gray in planes:
        g = gray.astype(np.float32)
        expected = (np.abs(np.diff(g, axis=1)).mean(axis=0), np.abs(np.diff(g.T, axis=1)).mean(axis=0))
        for got, want in zip(_mean_steps(gray), expected, strict=True):
            assert got.dtype == np.float32 and np.array_equal(got, want)


def test_the_nearest_quality_prefers_the_lowest_of_equal_distances_and_finds_every_ijg_table():
    for q in (1, 10, 50, 75, 90, 100):
        luma, chroma = ijg_tables(q)
        found = estimate_quality({0: list(luma.astype(int)), 1: list(chroma.astype(int))})
        # q 1..3 and 98..100 may share clamped tables: the lowest quality with those tables is reported
        assert ijg_tables(found)[0].tolist() == luma.tolist() and found <= q
