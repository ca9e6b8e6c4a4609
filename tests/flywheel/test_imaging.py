import io

import numpy as np
from PIL import Image

from flywheel import imaging
from flywheel.imaging import decode
from tests.images import encode, photo_like, png_bomb_header


def test_decodes_jpeg_to_bounded_view_with_draft():
    data = encode(photo_like(1600, 1200))
    d = decode(data, view_short_side=256)
    assert d.ok and d.format == "JPEG" and (d.width, d.height) == (1600, 1200)
    assert min(d.rgb.shape[:2]) == 256 and d.rgb.dtype == np.uint8
    assert d.gray.shape == d.rgb.shape[:2]


def test_small_images_are_not_upscaled():
    d = decode(encode(photo_like(40, 30), "PNG"), view_short_side=256)
    assert d.ok and d.rgb.shape == (30, 40, 3)


def test_broken_reasons():
    good_png = encode(photo_like(64, 64), "PNG")
    good_jpg = encode(photo_like(256, 256))
    assert decode(b"").broken_reason == imaging.ZERO_BYTE
    assert decode(None).broken_reason == imaging.READ_ERROR
    assert decode(b"hello, I am text" * 10).broken_reason == imaging.NOT_IMAGE
    assert decode(good_jpg[: len(good_jpg) // 2]).broken_reason == imaging.TRUNCATED
    assert decode(good_png[: len(good_png) // 2]).broken_reason in (imaging.TRUNCATED, imaging.DECODE_ERROR)
    assert decode(png_bomb_header()).broken_reason == imaging.BOMB
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.float32), mode="F").save(buf, format="TIFF")
    assert decode(buf.getvalue()).broken_reason == imaging.UNSUPPORTED_MODE


def test_exif_orientation_is_applied_to_the_view():
    arr = photo_like(300, 200)
    img = Image.fromarray(arr)
    exif = Image.Exif()
    exif[imaging.EXIF_ORIENTATION_TAG] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif)
    d = decode(buf.getvalue(), view_short_side=1000)
    assert d.exif_orientation == 6
    assert (d.width, d.height) == (300, 200)  # stored size
    assert d.rgb.shape[:2] == (300, 200)  # displayed (transposed) view


def test_rgba_is_flattened_on_white():
    rgba = np.zeros((10, 10, 4), np.uint8)
    d = decode(encode(rgba, "PNG"))
    assert d.ok and int(d.rgb.min()) == 255


def test_image_between_pillows_warning_limit_and_max_pixels_decodes_even_with_warnings_as_errors():
    import warnings

    from tests.images import solid_png

    bomb_ish = solid_png(12000, 12000)  # 144 MP: above Pillow's 89 MP warning, below max_pixels (179 MP)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # as Ray workers / pytest -W error may run
        d = decode(bomb_ish, view_short_side=64)
    assert d.ok and (d.width, d.height) == (12000, 12000) and min(d.rgb.shape[:2]) == 64
    # judged by the configured limit, not by Pillow's process-global one
    strict = decode(bomb_ish, limits=imaging.DecodeLimits(max_pixels=100_000_000))
    assert strict.broken_reason == imaging.BOMB and "12000x12000" in strict.broken_detail


def test_decode_never_raises_even_for_unforeseen_errors(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("unexpected inside Pillow")

    monkeypatch.setattr(imaging, "_to_rgb", boom)
    d = decode(encode(photo_like(32, 32), "PNG"))
    assert d.broken_reason == imaging.DECODE_ERROR and "unexpected inside Pillow" in d.broken_detail
