from filters.base import SampleBatch
from filters.broken import BrokenScorer, extension_of
from flywheel.imaging import decode
from tests.images import encode, photo_like, png_bomb_header


def _batch(items: list[tuple[str, bytes | None]]) -> SampleBatch:
    return SampleBatch(
        ids=[u for u, _ in items],
        images=[b for _, b in items],
        captions=[None] * len(items),
        decoded=[decode(b) for _, b in items],
        uris=[u for u, _ in items],
    )


def test_reasons_and_mislabeling():
    jpg = encode(photo_like(64, 64))
    png = encode(photo_like(64, 64), "PNG")
    out = BrokenScorer()(
        _batch(
            [
                ("a.jpg", jpg),
                ("b.jpg", png),
                ("c.png", b""),
                ("d.jpg", b"not an image"),
                ("e.jpg", jpg[: len(jpg) // 2]),
                ("f.png", png_bomb_header()),
                ("data.tar#key.jpg", jpg),
            ]
        )
    )
    assert out["broken_reason"] == [None, None, "zero_byte", "not_image", "truncated", "decompression_bomb", None]
    assert out["broken_mislabeled"] == [False, True, None, None, False, None, False]
    assert out["broken_detail"][0] is None and "empty" in out["broken_detail"][2]


def test_extension_of_handles_container_uris():
    assert extension_of("/x/y.JPG") == ".jpg"
    assert extension_of("s.tar#000123.png") == ".png"
    assert extension_of("f.parquet#row=3") == ""
