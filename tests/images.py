"""Tiny image builders shared by tests (bytes of real encoded images)."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def photo_like(w: int = 320, h: int = 240, seed: int = 0) -> np.ndarray:
    """A smooth colourful image with texture: sky-like gradient above, noisy ground below."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[..., 0] = 80 + 100 * (x / w)
    img[..., 1] = 120 + 60 * np.sin(x / 17.0 + seed)
    img[..., 2] = 230 - 150 * (y / h)
    img[h // 2 :] *= 0.6
    img += rng.normal(0, 12, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str = "JPEG", **kw: object) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kw)
    return buf.getvalue()


def png_bomb_header(width: int = 60000, height: int = 60000) -> bytes:
    """A valid PNG signature and IHDR claiming a huge size, with a tiny IDAT: never allocate it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def solid_png(width: int, height: int, value: int = 128) -> bytes:
    """A real, decodable grayscale PNG of any size that compresses to almost nothing (e.g. 12000x12000 ~ 150 kB).

    Built row by row with zlib, so a 144-megapixel image costs well under a second and no pixel buffer.
    """

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    row = b"\x00" + bytes([value]) * width
    z = zlib.compressobj(6)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
