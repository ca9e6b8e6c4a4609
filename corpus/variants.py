"""Byte- and pixel-level variants for the demo corpus: each one exercises one stage-1 filter.

Everything here is a pure function of its inputs (no randomness inside), so the corpus is
reproducible byte for byte given the caller's seeded choices. Hostile files are crafted at
the byte level (chunks, markers) instead of being produced by an encoder, so they never
allocate the pixels they claim to have.
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter, ImageOps

from flywheel.phash import phash64
from flywheel.select.dedup_groups import hamming64

# Clockwise rotation -> the Pillow transpose that performs it (Pillow's ROTATE_* are counter-clockwise).
_CLOCKWISE = {90: Image.Transpose.ROTATE_270, 180: Image.Transpose.ROTATE_180, 270: Image.Transpose.ROTATE_90}

# EXIF orientation -> transpose that turns the upright image into the stored pixels; the inverse of
# what a viewer (and flywheel.imaging.decode) applies to display it.
_STORE_FOR_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def encode(img: Image.Image, fmt: str, quality: int = 90, progressive: bool = False) -> bytes:
    """Encode with fixed settings so equal inputs give equal bytes."""
    buf = io.BytesIO()
    if fmt == "JPEG":
        img.save(buf, format="JPEG", quality=quality, progressive=progressive, optimize=progressive)
    elif fmt == "PNG":
        img.save(buf, format="PNG", optimize=False, compress_level=6)
    else:
        img.save(buf, format=fmt)
    return buf.getvalue()


def phash(img: Image.Image) -> int:
    """64-bit DCT perceptual hash, flywheel.phash.phash64 (the filter's hash) read unsigned.

    The generator uses it to keep unrelated samples far apart and to measure how far each
    labeled near-duplicate really is from its original.
    """
    return phash64(np.asarray(img.convert("L"))) & 0xFFFFFFFFFFFFFFFF


hamming = hamming64  # the filter's distance, defined once in the core


def rotate_clockwise(img: Image.Image, degrees: int) -> Image.Image:
    """Rotate the pixels themselves (no metadata): what a sideways-scanned photo looks like."""
    return img.transpose(_CLOCKWISE[degrees]) if degrees else img.copy()


def exif_oriented_jpeg(upright: Image.Image, orientation: int, quality: int) -> bytes:
    """JPEG whose stored pixels are turned, with an EXIF Orientation tag that displays them upright."""
    stored = upright.transpose(_STORE_FOR_ORIENTATION[orientation]) if orientation != 1 else upright
    exif = Image.Exif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    stored.save(buf, format="JPEG", quality=quality, exif=exif.tobytes())
    return buf.getvalue()


def near_dup_resized(img: Image.Image, factor: float) -> Image.Image:
    w, h = img.size
    return img.resize((max(1, round(w * factor)), max(1, round(h * factor))), Image.Resampling.LANCZOS)


def near_dup_cropped(img: Image.Image, fraction: float) -> Image.Image:
    """Trim `fraction` of each dimension, split unevenly between the two sides (a sloppy re-crop)."""
    w, h = img.size
    dx, dy = round(w * fraction), round(h * fraction)
    return img.crop((dx // 3, dy - dy // 3, w - (dx - dx // 3), h - dy // 3))


def flat(size: tuple[int, int], colour: tuple[int, int, int]) -> Image.Image:
    return Image.new("RGB", size, colour)


def near_empty(
    size: tuple[int, int], colour: tuple[int, int, int], specks: np.ndarray | None, line_delta: int = 0, line_y: int = 0
) -> Image.Image:
    """A flat image plus a few stray pixels (`specks`: rows of x, y, r, g, b) or one faint line."""
    pixels = np.empty((size[1], size[0], 3), dtype=np.uint8)
    pixels[:] = colour
    if specks is not None:
        for x, y, r, g, b in specks:
            pixels[y, x] = (r, g, b)
    if line_delta:
        row = np.clip(np.array(colour, np.int16) + line_delta, 0, 255).astype(np.uint8)
        pixels[line_y : line_y + 2, :] = row
    return Image.fromarray(pixels)


def truncated(data: bytes, fraction: float) -> bytes:
    """Cut a valid file short, as an interrupted download would."""
    return data[: max(1, int(len(data) * fraction))]


def _png_chunk(tag: bytes, payload: bytes) -> bytes:
    crc = zlib.crc32(tag + payload) & 0xFFFFFFFF
    return struct.pack(">I", len(payload)) + tag + payload + struct.pack(">I", crc)


def png_bomb(width: int, height: int) -> bytes:
    """A well-formed PNG (valid CRCs) whose IHDR claims `width` x `height` but whose IDAT is tiny.

    A reader that trusts the header and allocates first would need width*height bytes.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale, no interlace
    idat = zlib.compress(b"\x00" * (1 + min(width, 4096)), 9)  # one filter byte + a partial first row
    chunks = _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + chunks


def jpeg_bomb(small_jpeg: bytes, width: int, height: int) -> bytes:
    """Patch the SOF dimensions of a real (small) JPEG so its header claims `width` x `height`."""
    if not (0 < width < 65536 and 0 < height < 65536):
        raise ValueError("JPEG dimensions are 16-bit")
    data = bytearray(small_jpeg)
    pos = 2  # after SOI
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            raise ValueError("not a marker-aligned JPEG")
        marker = data[pos + 1]
        length = struct.unpack(">H", data[pos + 2 : pos + 4])[0]
        if marker in (0xC0, 0xC1, 0xC2):
            data[pos + 5 : pos + 9] = struct.pack(">HH", height, width)
            return bytes(data)
        pos += 2 + length
    raise ValueError("no SOF marker found")


def float_tiff(gray: np.ndarray) -> bytes:
    """32-bit float greyscale TIFF (mode F): decodable, but has no faithful 8-bit RGB conversion."""
    return encode(Image.fromarray(gray.astype(np.float32) / 255.0), "TIFF")  # float32 -> mode F


def uint16_png(gray: np.ndarray) -> bytes:
    """16-bit greyscale PNG, which Pillow opens as mode I;16 (no tone mapping to 8 bits assumed)."""
    return encode(Image.fromarray(gray.astype(np.uint16) * 257), "PNG")


def not_image_text() -> bytes:
    return b"<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1></body></html>\n"


def not_image_random(rng: np.random.Generator, size: int) -> bytes:
    """Random bytes; the first byte is forced to 0x00 so no format's magic number can match."""
    data = bytearray(rng.bytes(size))
    data[0] = 0
    return bytes(data)


# TI2I edits: instruction -> how the target is derived from the source.
EDITS: tuple[tuple[str, str], ...] = (
    ("make it black and white", "a black and white photo of"),
    ("flip the image horizontally", "a mirrored photo of"),
    ("make the colours warmer", "a warm-toned photo of"),
    ("blur the whole picture", "a blurry photo of"),
    ("increase the contrast", "a high-contrast photo of"),
)


def apply_edit(img: Image.Image, instruction: str) -> Image.Image:
    """Produce the target of an edit triple from its source."""
    rgb = img.convert("RGB")
    if instruction == "make it black and white":
        return ImageOps.grayscale(rgb)
    if instruction == "flip the image horizontally":
        return ImageOps.mirror(rgb)
    if instruction == "make the colours warmer":
        arr = np.asarray(rgb, dtype=np.float32) * np.array([1.12, 1.0, 0.82], np.float32)
        return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    if instruction == "blur the whole picture":
        return rgb.filter(ImageFilter.GaussianBlur(4))
    if instruction == "increase the contrast":
        return ImageEnhance.Contrast(rgb).enhance(1.6)
    raise ValueError(f"unknown edit {instruction!r}")
