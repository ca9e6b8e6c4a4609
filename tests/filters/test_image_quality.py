import io
import pickle

import numpy as np
import pytest
from PIL import Image, ImageFilter

from corpus.photo_sets import load_photo
from filters.base import SampleBatch
from filters.image_quality import ImageQualityScorer, _NoGlobals, noise_sigma
from flywheel.imaging import decode
from tests.images import encode


def _batch(items: list[bytes]) -> SampleBatch:
    return SampleBatch(
        ids=[str(i) for i in range(len(items))],
        images=items,
        captions=[None] * len(items),
        decoded=[decode(b, ImageQualityScorer.view_short_side) for b in items],
    )


def test_scores_move_with_blur_and_noise_and_null_for_broken() -> None:
    rgb = load_photo("rocket")
    blurred = np.asarray(Image.fromarray(rgb).filter(ImageFilter.GaussianBlur(3)))
    noisy = np.clip(rgb + np.random.default_rng(0).normal(0, 25, rgb.shape), 0, 255).astype(np.uint8)
    out = ImageQualityScorer()(_batch([encode(rgb, "PNG"), encode(blurred, "PNG"), encode(noisy, "PNG"), b"x"]))
    clean, blur, noise, broken = ({c: out[c][i] for c in ("iq_brisque", "iq_sharpness", "iq_noise")} for i in range(4))
    assert blur["iq_sharpness"] < clean["iq_sharpness"] / 4
    assert blur["iq_brisque"] > clean["iq_brisque"]
    assert noise["iq_noise"] > clean["iq_noise"] + 10
    assert noise["iq_brisque"] > clean["iq_brisque"]
    assert set(broken.values()) == {None}


def test_noise_estimate_recovers_sigma_on_flat_image() -> None:
    flat = np.full((256, 256), 128.0, np.float32)
    noisy = flat + np.random.default_rng(1).normal(0, 10, flat.shape).astype(np.float32)
    assert noise_sigma(noisy) == pytest.approx(10, rel=0.1)


def test_data_only_unpickler_refuses_globals() -> None:
    assert _NoGlobals(io.BytesIO(pickle.dumps({"min_": [0.5, 1.0]}))).load() == {"min_": [0.5, 1.0]}
    with pytest.raises(pickle.UnpicklingError):
        _NoGlobals(io.BytesIO(pickle.dumps(Image.Image))).load()
