"""The face filter: OpenCV's shipped frontal-face cascade finds the astronaut, and nothing in face-free photos."""

from __future__ import annotations

import numpy as np
from skimage import data

from filters.base import SampleBatch
from filters.faces import FacesScorer, cascade_path
from filters.registry import resolve
from flywheel.imaging import decode, encode_jpeg


def _batch(rgbs: list[np.ndarray]) -> SampleBatch:
    decoded = [decode(encode_jpeg(r), 256) for r in rgbs] + [decode(b"broken", 256)]
    n = len(decoded)
    return SampleBatch(ids=[str(i) for i in range(n)], images=[None] * n, captions=[None] * n, decoded=decoded)


def test_a_portrait_has_a_face_and_photos_without_people_have_none() -> None:
    assert cascade_path().is_file()  # ships inside the OpenCV wheel: no download
    rgbs = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket(), np.stack([data.coins()] * 3, -1)]
    out = FacesScorer()(_batch(rgbs))
    assert out["face_count"][0] == 1 and 0.01 < out["face_area_fraction"][0] < 0.2
    assert out["face_count"][1:5] == [0, 0, 0, 0] and out["face_area_fraction"][1:5] == [0.0] * 4
    assert out["face_count"][5] is None and out["face_area_fraction"][5] is None  # broken: null, never 0
    assert "faces" not in [c.name for c in resolve(None)] and "faces" in [c.name for c in resolve(["faces"])]
