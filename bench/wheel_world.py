"""The wheel-turn bench's world: rendered coloured shapes and a detector that judges them from pixels only.

Kept apart from bench/wheel_turn.py (the turn itself) so the evaluator stays independent of the training
steps: it never sees a caption, and tests/bench checks it on clean renders.
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

BACKGROUND = (245, 245, 240)
COLORS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (230, 210, 40)}
SHAPES = ("circle", "square", "triangle")


def render(shape: str, color: str, size: int, rng: np.random.Generator) -> Image.Image:
    """A shape of `color` with a random centre and scale (so the model must learn the concept, not one image)."""
    image = Image.new("RGB", (size, size), BACKGROUND)
    draw = ImageDraw.Draw(image)
    r = size * rng.uniform(0.25, 0.38)
    cx, cy = size * rng.uniform(0.4, 0.6), size * rng.uniform(0.4, 0.6)
    fill = COLORS[color]
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
    elif shape == "square":
        draw.rectangle((cx - r, cy - r, cx + r, cy + r), fill=fill)
    else:
        draw.polygon([(cx, cy - r), (cx + r, cy + r), (cx - r, cy + r)], fill=fill)
    return image


def caption(shape: str, color: str) -> str:
    return f"a {color} {shape} on a light background"


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def detect(image: Image.Image) -> dict[str, Any]:
    """Shape and colour of the dominant foreground object, from pixels only.

    Foreground = the largest connected component of pixels whose distance to the background colour exceeds 60
    (so stray pixels do not inflate the box); colour = the named colour nearest to the foreground's median; shape
    from the fill ratio of the component inside its bounding box (square ~1.0, circle ~pi/4, triangle ~0.5).
    """
    from scipy import ndimage

    arr = np.asarray(image.convert("RGB"), dtype=np.float32)
    dist = np.linalg.norm(arr - np.array(BACKGROUND, np.float32), axis=2)
    labels, n = ndimage.label(dist > 60)
    if n:
        sizes = ndimage.sum(np.ones_like(labels), labels, index=range(1, n + 1))
        mask = labels == 1 + int(np.argmax(sizes))
    else:
        mask = np.zeros(labels.shape, bool)
    frac = float(mask.mean())
    if frac < 0.02:
        return {"shape": None, "color": None, "fill": 0.0, "coverage": frac, "color_dist": 255.0}
    ys, xs = np.nonzero(mask)
    box = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    fill = float(mask.sum() / box)
    median = np.median(arr[mask], axis=0)
    dists = {c: float(np.linalg.norm(median - np.array(v))) for c, v in COLORS.items()}
    color = min(dists, key=dists.get)
    shape = "square" if fill > 0.89 else "circle" if fill > 0.64 else "triangle"
    return {"shape": shape, "color": color, "fill": fill, "coverage": frac, "color_dist": dists[color]}


IDEAL_FILL = {"square": 1.0, "circle": math.pi / 4, "triangle": 0.5}


def reward(det: dict[str, Any], shape: str, color: str) -> float:
    """Continuous detector reward: closeness of the fill ratio to the shape's and of the colour to the prompt's."""
    if det["shape"] is None:
        return 0.0
    shape_r = max(0.0, 1.0 - abs(det["fill"] - IDEAL_FILL[shape]) / 0.3)
    color_r = max(0.0, 1.0 - det["color_dist"] / 200.0) if det["color"] == color else 0.0
    return 0.5 * shape_r + 0.5 * color_r
