"""Photo crops for the demo corpus, cut from the natural photos scikit-image ships (offline).

Every crop handed out is kept perceptually distinct from all earlier ones (low box overlap
and a large distance under the perceptual hash filters.dedup uses), so the only
near-duplicates in the corpus are the ones the generator makes on purpose and labels;
otherwise a dedup filter would be scored against accidental, unlabeled duplicates. Crops
with almost no texture are rejected for the same reason: the only blank images should be
the labeled ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import skimage.data
from PIL import Image

from corpus.variants import hamming, phash


@dataclass(frozen=True)
class PhotoSpec:
    """A source photo: a short noun phrase for derived captions and a few full captions to draw from."""

    subject: str
    captions: tuple[str, ...]
    gray: bool = False


PHOTOS: dict[str, PhotoSpec] = {
    "astronaut": PhotoSpec(
        "a smiling astronaut in an orange spacesuit",
        (
            "a portrait photo of a smiling astronaut in an orange spacesuit in front of an American flag",
            "an astronaut in an orange flight suit next to a helmet and a space shuttle model",
            "a cropped photo of a woman astronaut wearing an orange pressure suit",
        ),
    ),
    "coffee": PhotoSpec(
        "a cup of coffee on a saucer",
        (
            "a cup of coffee on a saucer, top view",
            "a red cup of espresso with a spoon on a red saucer on a wooden table",
            "a close-up photo of a coffee cup and saucer on a wooden table",
        ),
    ),
    "chelsea": PhotoSpec(
        "a tabby cat",
        (
            "a close-up photo of a tabby cat with green eyes",
            "a ginger tabby cat looking at the camera",
            "the face of a striped cat with long white whiskers",
        ),
    ),
    "rocket": PhotoSpec(
        "a rocket on a launch pad",
        (
            "a rocket on a launch pad at dusk between tall lightning towers",
            "a photo of a rocket launch pad lit up at night under a blue sky",
            "a white rocket standing on the launch pad before lift-off",
        ),
    ),
    "camera": PhotoSpec(
        "a cameraman with a tripod",
        (
            "a black and white photo of a man with a film camera on a tripod",
            "a grayscale photo of a cameraman standing on a lawn",
            "a man in a dark coat looking through a camera, black and white",
        ),
        gray=True,
    ),
    "hubble_deep_field": PhotoSpec(
        "distant galaxies in deep space",
        (
            "a telescope image of many distant galaxies in deep space",
            "colourful galaxies scattered across a black sky, Hubble deep field",
            "a deep-field astronomy photo full of tiny galaxies and stars",
        ),
    ),
    "coins": PhotoSpec(
        "ancient coins",
        (
            "a grayscale photo of ancient coins arranged in rows on a dark background",
            "old silver coins laid out in a grid, black and white",
            "a close-up of antique coins with engraved portraits",
        ),
        gray=True,
    ),
    "immunohistochemistry": PhotoSpec(
        "stained tissue under a microscope",
        (
            "a microscope image of tissue stained brown and blue",
            "an immunohistochemistry slide showing brown stained cells",
            "a micrograph of stained glandular tissue",
        ),
    ),
    "retina": PhotoSpec(
        "a human retina",
        (
            "a fundus photograph of a human retina with branching blood vessels",
            "an orange retina image showing the optic disc and blood vessels",
            "a medical photo of the back of the eye",
        ),
    ),
    "grass": PhotoSpec(
        "grass",
        (
            "a grayscale close-up photo of grass",
            "a black and white texture of dense grass blades",
            "a top-down photo of a lawn, black and white",
        ),
        gray=True,
    ),
}

ASPECTS: tuple[float, ...] = (1.0, 4 / 3, 3 / 4, 3 / 2, 2 / 3, 16 / 9, 9 / 16)


@dataclass(frozen=True)
class Crop:
    """A finished crop: pixels (RGB or L), which photo it came from and the caption chosen for it."""

    image: Image.Image
    photo: str
    caption: str
    area_fraction: float

    @property
    def subject(self) -> str:
        return PHOTOS[self.photo].subject


def _iou(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> float:
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union else 0.0


@dataclass
class PhotoPool:
    """Hands out mutually distinct crops of the skimage photos, resized into [256, max_side]."""

    max_side: int = 1024
    min_hash_distance: int = 12  # the stage-1 recipe groups near-dups at <= 4..6 bits
    max_iou: float = 0.45
    _arrays: dict[str, np.ndarray] = field(default_factory=dict)
    _boxes: dict[str, list[tuple[int, int, int, int]]] = field(default_factory=dict)
    _small: dict[str, tuple[Image.Image, int]] = field(default_factory=dict)
    _hashes: list[int] = field(default_factory=list)

    def source(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            arr = getattr(skimage.data, name)()
            if arr.dtype != np.uint8:
                arr = (arr.astype(np.float32) * (255.0 / max(1.0, float(arr.max())))).astype(np.uint8)
            if arr.ndim == 3 and arr.shape[2] == 4:
                arr = arr[..., :3]
            self._arrays[name] = arr
        return self._arrays[name]

    def _small_gray(self, name: str) -> tuple[Image.Image, int]:
        """Luma of the photo reduced by an integer factor: candidate checks run on it, ~20x cheaper."""
        if name not in self._small:
            arr = self.source(name)
            factor = max(1, min(arr.shape[:2]) // 160)
            self._small[name] = (Image.fromarray(arr).convert("L").reduce(factor), factor)
        return self._small[name]

    def crop(self, rng: np.random.Generator, name: str, tries: int = 40) -> Crop:
        """The most distinct of up to `tries` candidates (the first that passes every check wins).

        Checks: box overlap with earlier crops of the same photo, texture, and the perceptual-hash
        distance to everything handed out so far (the last two on a reduced copy, for speed).
        """
        arr = self.source(name)
        h, w = arr.shape[:2]
        small, k = self._small_gray(name)
        boxes = self._boxes.setdefault(name, [])
        best: tuple[tuple[bool, float, int], tuple[int, int, int, int], int] | None = None
        for _ in range(tries):
            aspect = ASPECTS[int(rng.integers(len(ASPECTS)))]
            area = float(rng.uniform(0.18, 0.6)) * w * h
            cw = min(w, round(math.sqrt(area * aspect)))
            ch = min(h, round(cw / aspect))
            cw = min(w, round(ch * aspect))
            x0, y0 = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
            box = (x0, y0, x0 + cw, y0 + ch)
            overlap = max((_iou(box, b) for b in boxes), default=0.0)
            sx, sy = x0 // k, y0 // k
            view = small.crop((sx, sy, max(sx + 8, (x0 + cw) // k), max(sy + 8, (y0 + ch) // k)))
            if float(np.asarray(view, dtype=np.float32).std()) < 18.0:
                continue  # too flat: would be an unlabeled "blank"
            code = phash(view)
            distance = min((hamming(code, c) for c in self._hashes), default=64)
            ok = overlap <= self.max_iou and distance >= self.min_hash_distance
            score = (ok, -overlap, distance)
            if best is None or score > best[0]:
                best = (score, box, code)
            if ok:
                break
        if best is None:  # every candidate was flat: take the whole photo
            box, code = (0, 0, w, h), phash(small)
        else:
            _, box, code = best
        boxes.append(box)
        self._hashes.append(code)
        spec = PHOTOS[name]
        img = Image.fromarray(arr[box[1] : box[3], box[0] : box[2]])
        img = img.convert("L") if spec.gray else img.convert("RGB")
        img = img.resize(self._out_size(rng, img.size), Image.Resampling.LANCZOS)
        caption = spec.captions[int(rng.integers(len(spec.captions)))]
        return Crop(img, name, caption, (box[2] - box[0]) * (box[3] - box[1]) / (w * h))

    def _out_size(self, rng: np.random.Generator, size: tuple[int, int]) -> tuple[int, int]:
        """Short side >= 256, long side <= max_side, upscaling at most ~2.5x (like real scraped images)."""
        cw, ch = size
        ratio = max(cw, ch) / min(cw, ch)
        hi = max(256, min(768, int(self.max_side / ratio), int(min(cw, ch) * 2.5)))
        short = int(rng.integers(256, hi + 1))
        long = min(self.max_side, round(short * ratio))
        return (long, short) if cw >= ch else (short, long)

    def remember(self, img: Image.Image) -> bool:
        """Register a non-photo image (e.g. a text poster); False if it looks like one already seen."""
        code = phash(img)
        clash = any(hamming(code, c) < self.min_hash_distance for c in self._hashes)
        if not clash:
            self._hashes.append(code)
        return not clash
