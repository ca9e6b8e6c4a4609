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
