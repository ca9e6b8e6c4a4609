"""Sample keys and content hashes, kept apart on purpose.

`sample_id` is the row's key: it is derived from where the sample came from (source kind,
uri, i.e. file path / tar member key / Parquet row, and the edit source), never from its
bytes, so two byte-identical files are two samples with two ids, and the same input gets
the same id on every run. What the bytes are is recorded separately (`content_hash`,
`image_sha256`) so exact-duplicate detection and caching still have a content address.
"""

from __future__ import annotations

import hashlib

# Bumped whenever the meaning of `id` changes; a pool written under another scheme is refused.
ID_SCHEME = "source-v2"


def _feed(h: hashlib._Hash, data: bytes | None) -> None:
    # Length-prefix each field so ("ab", "c") and ("a", "bc") never collide.
    if data is None:
        h.update(b"\xff" * 8)
    else:
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)


def _text(value: str | None) -> bytes | None:
    return value.encode("utf-8") if value is not None else None


def sample_id(kind: str, uri: str, source_uri: str | None = None) -> str:
    """blake2b-128 of the sample's source identity: source kind, its uri and (edits) its source uri.

    uris are absolute and unique per input row within a source (path, `tar#key`,
    `file.parquet#row=i`), so ids are unique across the sources of one pool.
    """
    h = hashlib.blake2b(digest_size=16, person=b"flywheel-id-v2")
    for part in (kind, uri, source_uri):
        _feed(h, _text(part))
    return h.hexdigest()


def content_hash(image: bytes | None, caption: str | None, source_image: bytes | None = None) -> str:
    """blake2b-128 over the image bytes, the caption and (for edits) the source image bytes.

    Equal for byte-identical samples: a content address, not a key (that was `id` before v2).
    """
    h = hashlib.blake2b(digest_size=16)
    _feed(h, image)
    _feed(h, _text(caption))
    _feed(h, source_image)
    return h.hexdigest()


def content_sha256(data: bytes | None) -> str | None:
    """sha256 of a field's bytes (the `image_sha256` column), None for a missing field."""
    return hashlib.sha256(data).hexdigest() if data is not None else None
