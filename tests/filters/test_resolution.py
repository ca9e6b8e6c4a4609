import pytest

from filters.base import SampleBatch
from filters.resolution import ResolutionScorer
from flywheel.imaging import decode
from tests.images import encode, photo_like


def test_sizes_from_header_and_nulls_for_broken():
    items = [encode(photo_like(400, 100)), encode(photo_like(30, 60), "PNG"), b""]
    batch = SampleBatch(ids=["a", "b", "c"], images=items, captions=[None] * 3, decoded=[decode(i) for i in items])
    out = ResolutionScorer()(batch)
    assert out["resolution_min_side"] == [100, 30, None]
    assert out["resolution_max_side"] == [400, 60, None]
    assert out["resolution_aspect"][:2] == [pytest.approx(4.0), pytest.approx(2.0)]
    assert out["resolution_megapixels"][0] == pytest.approx(0.04)
