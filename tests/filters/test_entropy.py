import numpy as np

from filters.base import SampleBatch
from filters.entropy import EntropyScorer, luma_entropy
from flywheel.imaging import decode
from tests.images import encode, photo_like


def test_entropy_separates_blank_near_empty_and_photos():
    blank = np.full((300, 300, 3), 128, np.uint8)
    near = blank.copy()
    near[10:12, 10:200] = 0
    items = [encode(blank, "PNG"), encode(near, "PNG"), encode(photo_like(300, 300)), b""]
    batch = SampleBatch(ids=list("abcd"), images=items, captions=[None] * 4, decoded=[decode(i) for i in items])
    out = EntropyScorer()(batch)
    bits = out["entropy_bits"]
    assert bits[0] == 0.0 and bits[1] < 0.2 and bits[2] > 5.0 and bits[3] is None
    assert out["entropy_std"][0] == 0.0


def test_luma_entropy_of_uniform_histogram_is_8_bits():
    assert abs(luma_entropy(np.arange(256, dtype=np.uint8).repeat(4)) - 8.0) < 1e-9


def _detail(images: list[bytes]) -> list[float | None]:
    batch = SampleBatch(
        ids=[str(i) for i in range(len(images))],
        images=images,
        captions=[None] * len(images),
        decoded=[decode(i) for i in images],
    )
    return EntropyScorer()(batch)["entropy_detail"]


def test_detail_is_zero_for_gradients_and_faint_noise_but_not_for_a_small_word():
    from PIL import Image, ImageDraw

    from corpus.hard import low_info_image

    rng = np.random.default_rng(0)
    low = [low_info_image(rng, kind) for kind in ("solid", "gradient", "noise", "noise")]
    word = Image.new("RGB", (800, 600), (235, 235, 230))
    ImageDraw.Draw(word).text((300, 280), "Exit", fill=(20, 20, 20), font_size=32)
    images = [encode(np.asarray(im), "PNG") for im in low] + [encode(np.asarray(word), "PNG"), encode(photo_like())]
    detail = _detail(images)
    # solid, near-flat gradient and sigma <= 2 noise show nothing at thumbnail size: below the recipe's 0.002
    assert all(d == 0.0 for d in detail[:4]), detail
    assert detail[4] > 0.002 and detail[5] > 0.05, detail  # text on a plain background is kept


def test_detail_rule_of_the_recipe_keeps_text_and_rejects_low_information():
    from flywheel.recipes import load_recipe

    rule = next(r for r in load_recipe("stage1_256p").rules if r.name == "low_info")
    assert rule.column == "entropy_detail" and 0.0 < rule.min < 0.004
