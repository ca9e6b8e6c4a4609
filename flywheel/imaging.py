"""Bounded, decode-once image reading.

Every sample is decoded exactly once per scoring run, at the smallest size the enabled
scorers need: JPEG files use Pillow's draft mode (DCT scaling), which decodes at 1/2, 1/4
or 1/8 scale for a fraction of the cost of a full decode while still reading the whole
stream, so truncation is still detected. Dimensions are checked from the header before
any pixel is decoded, so a decompression bomb never allocates its pixels.
"""

from __future__ import annotations

import io
import struct
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, UnidentifiedImageError

# Pillow's own bomb guard is process-global and, between its warning and error thresholds, only
# warns (DecompressionBombWarning; an *exception* wherever warnings are errors, e.g. under pytest
# -W error). We judge size ourselves from the header against DecodeLimits.max_pixels, so `decode`
# silences that warning locally, and Pillow's DecompressionBombError (2x its limit) stays a second net.

# Modes we can turn into RGB without inventing a tone mapping.
SUPPORTED_MODES = frozenset({"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "La"})

# Broken-file reasons, in the order they are checked.
ZERO_BYTE = "zero_byte"
READ_ERROR = "read_error"
NOT_IMAGE = "not_image"
BOMB = "decompression_bomb"
UNSUPPORTED_MODE = "unsupported_mode"
TRUNCATED = "truncated"
DECODE_ERROR = "decode_error"
SCORER_ERROR = "scorer_error"  # decoded, but a scorer raised on this sample (set by the scoring stage)
BROKEN_REASONS = (ZERO_BYTE, READ_ERROR, NOT_IMAGE, BOMB, UNSUPPORTED_MODE, TRUNCATED, DECODE_ERROR, SCORER_ERROR)

EXIF_ORIENTATION_TAG = 0x0112

# Shorter side of the view a scoring run decodes, whatever filters are enabled: each scorer then reduces
# this one view to its own fixed size (`Decoded.rgb_at`), so a column's value never depends on which other
# scorers ran. Large enough for every shipped scorer (NSFW's 256 px resize is the largest).
SCORING_VIEW = 256


@dataclass(frozen=True)
class DecodeLimits:
    """Upper bounds that keep hostile files from exhausting memory."""

    max_pixels: int = 178_956_970  # Pillow's default bomb threshold (about 13k x 13k)
    max_side: int = 65_535
    max_bytes: int = 256 * 1024 * 1024
    # Wall-clock bound of one scoring partition (read + decode + CPU scorers): a stuck read fails that
    # partition with a clear error instead of hanging the run; 0 disables.
    partition_timeout_s: float = 1800.0


@dataclass
class Decoded:
    """Result of one bounded decode: header facts, one RGB view, or a broken reason."""

    format: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None
    exif_orientation: int | None = None
    rgb: np.ndarray | None = None  # HxWx3 uint8, EXIF-transposed, shorter side <= view_short_side
    broken_reason: str | None = None
    broken_detail: str | None = None
    _gray: np.ndarray | None = field(default=None, repr=False)
    _views: dict[tuple[str, int], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.broken_reason is None and self.rgb is not None

    @property
    def gray(self) -> np.ndarray:
        """Luma (ITU-R 601) of the view, computed once and shared by all scorers."""
        if self.rgb is None:
            raise ValueError("no decoded view: the sample is broken")
        if self._gray is None:
            rgb = self.rgb.astype(np.float32)
            self._gray = (0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]).astype(np.uint8)
        return self._gray

    def rgb_at(self, short_side: int) -> np.ndarray:
        """The RGB view reduced so its shorter side is at most `short_side` (cached per size).

        Scorers read their own fixed size from the one decoded view instead of whatever size the
        decode happened to make, so a score depends on the file and the scorer only.
        """
        return self._at("rgb", short_side)

    def gray_at(self, short_side: int) -> np.ndarray:
        """Luma of `rgb_at(short_side)`'s size, reduced from the full-view luma (cached per size)."""
        return self._at("L", short_side)

    def _at(self, mode: str, short_side: int) -> np.ndarray:
        if self.rgb is None:
            raise ValueError("no decoded view: the sample is broken")
        key = (mode, short_side)
        if key not in self._views:
            base = self.rgb if mode == "rgb" else self.gray
            h, w = base.shape[:2]
            if min(h, w) <= short_side:
                self._views[key] = base
            else:
                ratio = short_side / min(h, w)
                size = (max(1, round(w * ratio)), max(1, round(h * ratio)))
                self._views[key] = np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BILINEAR))
        return self._views[key]


def _fail(decoded: Decoded, reason: str, detail: str) -> Decoded:
    decoded.broken_reason = reason
    decoded.broken_detail = detail[:300]
    return decoded


def decode(data: bytes | None, view_short_side: int = 256, limits: DecodeLimits | None = None) -> Decoded:
    """Decode `data` once into an RGB view whose shorter side is at most `view_short_side`.

    Never raises for bad input: every failure becomes a `broken_reason`, so one hostile sample
    can never fail the partition it is in (anything unforeseen becomes `decode_error`).
    """
    limits = limits or DecodeLimits()
    try:
        with warnings.catch_warnings():
            # Size is judged by limits.max_pixels from the header, not by Pillow's global warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            return _decode(data, view_short_side, limits)
    except Exception as exc:  # the contract is "never raises for bad input"
        return _fail(Decoded(), DECODE_ERROR, f"{type(exc).__name__}: {exc}")


def _decode(data: bytes | None, view_short_side: int, limits: DecodeLimits) -> Decoded:
    out = Decoded()
    if data is None:
        return _fail(out, READ_ERROR, "no bytes could be read")
    if len(data) == 0:
        return _fail(out, ZERO_BYTE, "file is empty")
    if len(data) > limits.max_bytes:
        return _fail(out, BOMB, f"{len(data)} bytes exceeds max_bytes={limits.max_bytes}")
    try:
        img = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        return _fail(out, NOT_IMAGE, str(exc))
    except Image.DecompressionBombError as exc:
        return _fail(out, BOMB, str(exc))
    except (OSError, ValueError, SyntaxError, struct.error) as exc:
        return _fail(out, NOT_IMAGE, f"{type(exc).__name__}: {exc}")
    with img:
        out.format, out.mode = img.format, img.mode
        out.width, out.height = img.size
        w, h = img.size
        if w <= 0 or h <= 0 or w > limits.max_side or h > limits.max_side or w * h > limits.max_pixels:
            return _fail(out, BOMB, f"{w}x{h} exceeds the decode limits")
        if img.mode not in SUPPORTED_MODES:
            return _fail(out, UNSUPPORTED_MODE, f"mode {img.mode} has no faithful RGB conversion")
        try:
            out.exif_orientation = _exif_orientation(img)
            if img.format == "JPEG":
                # draft() picks the largest DCT scale that keeps both sides >= the request.
                scale = max(1.0, min(w, h) / max(1, view_short_side))
                img.draft("RGB", (max(1, int(w / scale)), max(1, int(h / scale))))
            img.load()
            view = _to_rgb(img)
        except Image.DecompressionBombError as exc:
            return _fail(out, BOMB, str(exc))
        except OSError as exc:
            reason = TRUNCATED if "truncated" in str(exc).lower() or "broken data stream" in str(exc) else DECODE_ERROR
            return _fail(out, reason, f"{type(exc).__name__}: {exc}")
        except (ValueError, SyntaxError, TypeError, IndexError, MemoryError, struct.error) as exc:
            return _fail(out, DECODE_ERROR, f"{type(exc).__name__}: {exc}")
    if out.exif_orientation not in (None, 1):
        view = _apply_orientation(view, out.exif_orientation)
    vw, vh = view.size
    if min(vw, vh) > view_short_side:
        ratio = view_short_side / min(vw, vh)
        view = view.resize((max(1, round(vw * ratio)), max(1, round(vh * ratio))), Image.Resampling.BILINEAR)
    out.rgb = np.asarray(view, dtype=np.uint8)
    out._gray = np.asarray(view.convert("L"), dtype=np.uint8)  # Pillow's C path: ~10x cheaper than numpy
    return out


def _exif_orientation(img: Image.Image) -> int | None:
    try:
        value = img.getexif().get(EXIF_ORIENTATION_TAG)
    except Exception:  # malformed EXIF must not make a decodable image broken
        return None
    return int(value) if isinstance(value, int) and 1 <= value <= 8 else None


_ORIENTATION_OPS = {
    2: (Image.Transpose.FLIP_LEFT_RIGHT,),
    3: (Image.Transpose.ROTATE_180,),
    4: (Image.Transpose.FLIP_TOP_BOTTOM,),
    5: (Image.Transpose.TRANSPOSE,),
    6: (Image.Transpose.ROTATE_270,),
    7: (Image.Transpose.TRANSVERSE,),
    8: (Image.Transpose.ROTATE_90,),
}


def _apply_orientation(img: Image.Image, orientation: int) -> Image.Image:
    for op in _ORIENTATION_OPS.get(orientation, ()):
        img = img.transpose(op)
    return img


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        return img.copy()
    if img.mode in ("RGBA", "LA", "La", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return img.convert("RGB")


def encode_jpeg(rgb: np.ndarray, quality: int = 90) -> bytes:
    """Encode an RGB array as JPEG (used by generators and tests)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def square_centre_crop(rgb: np.ndarray, size: int) -> np.ndarray:
    """Shorter side resized to `size` (bilinear), then the centre `size` x `size` crop, uint8 HxWx3.

    The one geometry every EfficientNet-Lite0 input goes through (the shared embedding filter, the rotation
    CNN, `efficientnet_lite.preprocess` for training and benches), so embeddings computed anywhere agree.
    """
    image = Image.fromarray(np.ascontiguousarray(rgb)).convert("RGB")
    scale = size / min(image.size)
    w, h = max(size, round(image.width * scale)), max(size, round(image.height * scale))
    image = image.resize((w, h), Image.Resampling.BILINEAR)
    left, top = (w - size) // 2, (h - size) // 2
    return np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.uint8)
