import io

import numpy as np
from PIL import Image
from skimage import data

from filters.base import SampleBatch
from filters.dedup import DedupScorer, hamming64
from flywheel.imaging import decode
from tests.images import encode, photo_like


def _resized(arr: np.ndarray, f: float, q: int) -> bytes:
    img = Image.fromarray(arr)
    img = img.resize((int(img.width * f), int(img.height * f)), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=q)
    return buf.getvalue()


def test_exact_and_perceptual_hashes():
    a = data.coffee()  # a real photo: pHash stability is a property of natural images
    other = photo_like(400, 300, seed=7)[::-1].copy()
    items = [encode(a), encode(a), _resized(a, 0.6, 70), encode(other), b""]
    batch = SampleBatch(ids=list("abcde"), images=items, captions=[None] * 5, decoded=[decode(i) for i in items])
    out = DedupScorer()(batch)
    sha, ph = out["dedup_sha256"], out["dedup_phash"]
    assert sha[0] == sha[1] != sha[2] and sha[4] is None
    assert ph[0] == ph[1] and hamming64(ph[0], ph[2]) <= 4
    assert hamming64(ph[0], ph[3]) > 10 and ph[4] is None
    assert all(-(2**63) <= v < 2**63 for v in ph[:4])
