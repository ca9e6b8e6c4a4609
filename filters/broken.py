"""Broken-file filter: the decode step's verdict, plus extension/content mismatches.

The decode itself happens once in `flywheel.imaging.decode`; this scorer reports its
reason so that every undecodable sample is scored as broken, never dropped.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from filters.base import CpuScorer, SampleBatch
from flywheel.schema import Column

# Extensions that name each Pillow format; anything else is not judged for mislabeling.
_EXTENSIONS = {
    "JPEG": {".jpg", ".jpeg", ".jpe", ".jfif"},
    "PNG": {".png"},
    "WEBP": {".webp"},
    "GIF": {".gif"},
    "BMP": {".bmp", ".dib"},
    "TIFF": {".tif", ".tiff"},
}
_KNOWN = set().union(*_EXTENSIONS.values())


def extension_of(uri: str) -> str:
    """Extension of a uri's path part (`file.tar#key.jpg` -> `.jpg`, `f.parquet#row=3` -> '')."""
    tail = uri.rsplit("#", 1)[-1]
    return os.path.splitext(tail)[1].lower()


class BrokenScorer(CpuScorer):
    name = "broken"
    columns = (
        Column(
            "broken_reason",
            pa.string(),
            "",
            "Why the file cannot be used (zero_byte, not_image, truncated, "
            "decompression_bomb, unsupported_mode, decode_error, read_error, scorer_error); null when it decodes.",
            owner="broken",
        ),
        Column("broken_detail", pa.string(), "", "The decoder's message for a broken file.", owner="broken"),
        Column(
            "broken_mislabeled",
            pa.bool_(),
            "",
            "The file extension names another format than the bytes hold.",
            owner="broken",
        ),
    )

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        reasons, details, mislabeled = [], [], []
        uris = batch.uris or [""] * len(batch)
        for decoded, uri in zip(batch.decoded, uris, strict=True):
            reasons.append(decoded.broken_reason)
            details.append(decoded.broken_detail)
            ext = extension_of(uri)
            if decoded.format is None or ext not in _KNOWN:
                mislabeled.append(None if decoded.format is None else False)
            else:
                mislabeled.append(ext not in _EXTENSIONS.get(decoded.format, set()))
        return {"broken_reason": reasons, "broken_detail": details, "broken_mislabeled": mislabeled}
