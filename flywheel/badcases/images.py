"""Content-addressed image files of the bad-case store: badcases/images/<aa>/<sha256>.png.

Files instead of SQLite blobs keep the database small (annotators' transactions touch rows, not megabytes)
and let the dashboard serve images directly. Bytes are checked with the bounded decoder before they are
stored, so a hostile upload never reaches a later reader as "an image".
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from flywheel.errors import UserError
from flywheel.imaging import decode
from flywheel.store.shards import write_bytes_atomic


class BadImageError(UserError):
    pass


def store_image(root: Path, data: bytes, what: str) -> str:
    """Write `data` once under `root` (idempotent by hash) and return its sha256; refuse undecodable bytes."""
    decoded = decode(data, view_short_side=32)
    if not decoded.ok:
        raise BadImageError(f"{what}: not a usable image ({decoded.broken_reason}: {decoded.broken_detail})")
    digest = hashlib.sha256(data).hexdigest()
    path = image_path(root, digest)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
    return digest


def image_path(root: Path, digest: str) -> Path:
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise UserError(f"not a sha256 hex digest: {digest!r}")
    return root / digest[:2] / f"{digest}.img"
