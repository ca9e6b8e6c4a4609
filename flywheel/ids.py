"""Stable sample ids derived from content, so the same sample gets the same id in every run."""

from __future__ import annotations

import hashlib


def _feed(h: hashlib._Hash, data: bytes | None) -> None:
    # Length-prefix each field so ("ab", "c") and ("a", "bc") never collide.
    if data is None:
        h.update(b"\xff" * 8)
    else:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)


def sample_id(image: bytes | None, caption: str | None, source_image: bytes | None = None) -> str:
    """blake2b-128 over the image bytes, the caption and (for edits) the source image bytes."""
    h = hashlib.blake2b(digest_size=16)
    _feed(h, image)
    _feed(h, caption.encode("utf-8") if caption is not None else None)
    _feed(h, source_image)
    return h.hexdigest()
