"""Images for the dashboard: looked up by id or content hash in the workspace, re-encoded once, cached.

A request never names a file. It names a bad-case image by its sha256 (which must be referenced by a case
in the store) or a pool sample by its content id (which must be in the pool); the bytes then come from the
store's content-addressed files or from the pool shard that holds the sample. Both are decoded with the
core's bounded decoder and re-encoded as JPEG, so what the browser gets is always a plain image (never the
stored bytes, which could be anything), and the result is cached under WORKSPACE/dashboards/thumbs/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.badcases import BadCaseStore
from flywheel.errors import UserError
from flywheel.imaging import decode, encode_jpeg
from flywheel.store.shards import write_bytes_atomic
from flywheel.workspace import Workspace

SIZES = {"thumb": 160, "full": 1024}  # shorter side in pixels
SHA256 = re.compile(r"^[0-9a-f]{64}$")
POOL_ID = re.compile(r"^[0-9a-f]{32}$")
# Served when the stored bytes do not decode (a rejected "broken" sample): a grey square that says so.
BROKEN_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="160"><rect width="160" height="160" fill="#ddd"/>'
    '<text x="80" y="85" font-size="14" text-anchor="middle" fill="#666">not decodable</text></svg>'
)


class ImageNotFound(UserError, LookupError):
    pass


class ImageService:
    def __init__(self, ws_root: Path, store: BadCaseStore) -> None:
        self.ws_root = ws_root
        self.store = store
        self.cache_dir = Workspace(ws_root).dashboards_dir / "thumbs"

    def _cached(self, kind: str, key: str, size: str, load: Callable[[], bytes | None]) -> bytes | None:
        if size not in SIZES:
            raise ImageNotFound(f"unknown size {size!r}")
        path = self.cache_dir / kind / key[:2] / f"{key}-{size}.jpg"
        if path.is_file():
            return path.read_bytes()
        decoded = decode(load(), view_short_side=SIZES[size])
        if not decoded.ok or decoded.rgb is None:
            return None
        data = encode_jpeg(decoded.rgb, quality=85)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(path, data)
        return data

    def case_image(self, digest: str, size: str) -> bytes | None:
        """JPEG of a bad-case image (None when it does not decode). The hash must belong to a case."""
        if not SHA256.match(digest):
            raise ImageNotFound("not a sha256 digest")
        with self.store.reading() as con:
            known = con.execute(
                "SELECT 1 FROM cases WHERE output_image = ? UNION ALL "
                "SELECT 1 FROM cases WHERE input_image = ? LIMIT 1",
                (digest, digest),
            ).fetchone()
        if known is None:
            raise ImageNotFound("no case has this image")
        path = self.store.image_file(digest)
        if not path.is_file():
            raise ImageNotFound("image file missing from the store")
        return self._cached("case", digest, size, path.read_bytes)

    def pool_image(self, sample_id: str, partition: int | None, size: str, *, source: bool = False) -> bytes | None:
        """JPEG of a pool sample (its target image, or with `source` its edit source), found by id."""
        if not POOL_ID.match(sample_id) or partition is None:
            raise ImageNotFound("unknown pool id")
        shard = Workspace(self.ws_root).pool.shard_path(int(partition))
        if not shard.is_file():
            raise ImageNotFound("pool shard missing")
        column = "source_image" if source else "image"

        def load() -> bytes | None:
            table = pq.read_table(shard, columns=["id", column], filters=[("id", "=", sample_id)])
            table = table.filter(pc.is_valid(table.column(column)))
            if table.num_rows == 0:
                raise ImageNotFound("no image bytes for this id")
            return table.column(column)[0].as_py()

        return self._cached("pool-src" if source else "pool", sample_id, size, load)
