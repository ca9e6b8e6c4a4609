import numpy as np
import pytest
from PIL import Image, ImageEnhance, ImageFilter

from corpus.photo_sets import load_photo
from filters.base import SampleBatch
from filters.quality_v1 import QualityV1Scorer, chroma_detail, crete_blur
from flywheel.imaging import decode
from tests.images import encode


def _score(arrays: list[np.ndarray]) -> list[dict[str, float]]:
    items = [encode(a, "PNG") for a in arrays]
    batch = SampleBatch(
        ids=[str(i) for i in range(len(items))],
        images=items,
        captions=[None] * len(items),
        decoded=[decode(b, QualityV1Scorer.view_short_side) for b in items],
    )
    out = QualityV1Scorer()(batch)
    return [{c: out[c][i] for c in out} for i in range(len(items))]


def test_each_column_moves_with_its_defect() -> None:
    rgb = load_photo("rocket")[:384, :384]
    img = Image.fromarray(rgb)
    blurred = np.asarray(img.filter(ImageFilter.GaussianBlur(4)))
    dark = (rgb * 0.2).astype(np.uint8)
    bright = (255 - (255 - rgb.astype(np.float32)) * 0.2).astype(np.uint8)
    washed = np.asarray(ImageEnhance.Color(img).enhance(0.1))
    vivid = np.asarray(ImageEnhance.Color(img).enhance(4.0))
    noise = np.random.default_rng(0).integers(0, 256, rgb.shape, dtype=np.uint8)
    clean, b, d, br, w, v, n = _score([rgb, blurred, dark, bright, washed, vivid, noise])
    assert b["v1_blur"] > clean["v1_blur"] + 0.2
    assert d["v1_luma_p99"] < clean["v1_luma_p99"] / 3
    assert br["v1_luma_p01"] > clean["v1_luma_p01"] + 100
    assert 0 < w["v1_saturation_p95"] < clean["v1_saturation_p95"] / 3
    assert w["v1_chroma_detail"] < clean["v1_chroma_detail"] / 3
    assert v["v1_saturation_clipped"] > clean["v1_saturation_clipped"] + 0.1
    assert v["v1_oversaturation"] > 2 * clean["v1_oversaturation"]
    assert n["v1_texture"] > 5 * clean["v1_texture"]
    assert n["v1_noise_like"] > 20 * clean["v1_noise_like"]


def test_grey_photo_has_zero_saturation_and_flat_image_reads_blurred() -> None:
    (grey,) = _score([load_photo("camera")])
    assert grey["v1_saturation_p95"] == 0.0
    assert crete_blur(np.full((64, 64), 7.0, np.float32)) == 1.0


def test_boosting_a_muted_photo_reads_oversaturated_though_little_clips() -> None:
    """The space photo is dark and muted: colour x2.5 clips few pixels but doubles its chroma detail."""
    rgb = load_photo("hubble_deep_field")[:320, :320]
    vivid = np.asarray(ImageEnhance.Color(Image.fromarray(rgb)).enhance(2.5))
    clean, boosted = _score([rgb, vivid])
    assert boosted["v1_saturation_clipped"] < 0.2
    assert boosted["v1_oversaturation"] > 1.8 * clean["v1_oversaturation"]
    assert chroma_detail(vivid) > 1.8 * chroma_detail(rgb)


def test_noisy_grey_photo_reads_monochrome_at_64px_where_a_desaturated_one_keeps_colour() -> None:
    """Per-channel noise gives a grey photo some saturation per pixel; the 4x-reduced view averages it out."""
    grey = load_photo("camera")[:384, :384]
    noisy = np.clip(grey + np.random.default_rng(0).normal(0, 3, grey.shape), 0, 255).astype(np.uint8)
    washed = np.asarray(ImageEnhance.Color(Image.fromarray(load_photo("astronaut")[:384, :384])).enhance(0.1))
    n, w = _score([noisy, washed])
    assert n["v1_saturation_p95"] > 0.05  # "= 0" would call it washed out
    assert n["v1_saturation_p95_64px"] < 0.5 * w["v1_saturation_p95_64px"]


def test_chroma_detail_judges_colour_against_the_image_not_in_absolute_terms() -> None:
    """A naturally muted photo keeps chroma detail comparable to its luma detail; its desaturated copy does not.

    The stained slide has low saturation (p95 about 0.55) yet reads clearly above its x0.2 copy, whose
    saturation is lower by the same factor as its chroma detail.
    """
    muted = load_photo("immunohistochemistry")[:320, :320]
    washed = np.asarray(ImageEnhance.Color(Image.fromarray(muted)).enhance(0.2))
    m, w = _score([muted, washed])
    assert m["v1_saturation_p95"] < 0.7
    assert w["v1_chroma_detail"] < 0.3 * m["v1_chroma_detail"]
    assert m["v1_oversaturation"] == pytest.approx(m["v1_chroma_detail"] * m["v1_saturation_p95"], rel=1e-5)


def test_noise_reads_white_where_texture_of_the_same_sigma_does_not() -> None:
    """Grass is rougher than a noisy photo by v1_texture at 256 px, but its residual shrinks at full scale."""
    grass = load_photo("grass")[:512, :512]
    smooth = np.asarray(Image.fromarray(load_photo("rocket")[:256, :256]).filter(ImageFilter.GaussianBlur(1)))
    noisy = np.clip(smooth + np.random.default_rng(1).normal(0, 8, smooth.shape), 0, 255).astype(np.uint8)
    g, n = _score([grass, noisy])
    assert n["v1_texture"] < g["v1_texture"]
    assert n["v1_noise_like"] > 5 * g["v1_noise_like"]
