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


def test_centre_crop_hashes_catch_a_trimmed_copy():
    from filters.dedup import centre_crop, phash64

    a = data.astronaut()
    h, w = a.shape[:2]
    trimmed = a[int(h * 0.07) : h - int(h * 0.06), int(w * 0.05) : w - int(w * 0.08)]
    items = [encode(a), encode(trimmed, quality=70)]
    batch = SampleBatch(ids=["a", "b"], images=items, captions=[None] * 2, decoded=[decode(i) for i in items])
    out = DedupScorer()(batch)
    full = hamming64(out["dedup_phash"][0], out["dedup_phash"][1])
    best = min(hamming64(out["dedup_phash"][1], out[c][0]) for c in ("dedup_phash_c92", "dedup_phash_c84"))
    assert best <= 8 < full  # the full views drifted apart; the original's centre crop still matches
    gray = np.zeros((100, 50), np.uint8)
    assert centre_crop(gray, 0.84).shape == (84, 42)
    assert isinstance(phash64(centre_crop(gray, 0.92)), int)
