"""Read the files packed in a Qt resource bundle (`.rcc`), for benches that train on Debian package data.

Why: `gcompris-qt-data` ships its photos (animals, monuments, fish, windmills, objects) inside `.rcc` bundles,
not as loose files. The format is small and documented by Qt's `rcc` tool: a "qres" header, a tree of 14-byte
(v1) or 22-byte (v2, v3) nodes, a name table (UTF-16BE) and a data table (length-prefixed blobs, optionally
zlib-compressed with a 4-byte length prefix). Every offset and length is checked against the file's size, so a
corrupt bundle raises `ValueError` instead of reading outside it; zstd entries are skipped (no image uses them).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

_DIRECTORY, _ZLIB, _ZSTD = 2, 1, 4
MAX_ENTRY = 64 << 20  # a decompressed entry larger than this is refused (decompression bomb bound)


def read_rcc(path: Path) -> dict[str, bytes]:
    """Every file in the bundle, keyed by its path inside it (no leading slash)."""
    b = Path(path).read_bytes()
    if len(b) < 20 or b[:4] != b"qres":
        raise ValueError(f"{path}: not a Qt resource bundle")
    version, tree, data, names = struct.unpack(">IIII", b[4:20])
    node = 14 if version == 1 else 22

    def take(offset: int, n: int) -> bytes:
        if offset < 0 or n < 0 or offset + n > len(b):
            raise ValueError(f"{path}: offset {offset}+{n} outside the file")
        return b[offset : offset + n]

    def name(offset: int) -> str:
        (n,) = struct.unpack(">H", take(names + offset, 2))
        return take(names + offset + 6, 2 * n).decode("utf-16-be")

    out: dict[str, bytes] = {}
    stack, seen = [(0, "")], set()
    while stack:
        i, prefix = stack.pop()
        if i in seen:
            raise ValueError(f"{path}: the tree loops at node {i}")
        seen.add(i)
        o = tree + i * node
        name_offset, flags = struct.unpack(">IH", take(o, 6))
        here = f"{prefix}/{name(name_offset)}" if i else ""
        if flags & _DIRECTORY:
            count, first = struct.unpack(">II", take(o + 6, 8))
            stack += [(c, here) for c in range(first, first + count)]
            continue
        (data_offset,) = struct.unpack(">I", take(o + 10, 4))
        (size,) = struct.unpack(">I", take(data + data_offset, 4))
        blob = take(data + data_offset + 4, size)
        if flags & _ZSTD:
            continue
        if flags & _ZLIB:
            blob = zlib.decompressobj().decompress(blob[4:], MAX_ENTRY)
        out[here.lstrip("/")] = blob
    return out
