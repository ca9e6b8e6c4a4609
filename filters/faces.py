"""Faces: how many frontal faces an image shows and how much of it the largest covers (portrait cue).

Why: the Qwen-Image reports rebalance data into General, Portrait and Text-rendering categories; a portrait
is an image whose subject is a person, and the one offline face detector that ships with a package is
OpenCV's Viola-Jones Haar cascade (`haarcascade_frontalface_default.xml`, inside opencv-python-headless < 5).
It finds frontal and near-frontal faces of at least `MIN_FACE` px in the 256 px view; it misses profiles,
small faces in crowds and heavily occluded ones, and fires now and then on face-like texture, so a recipe
reads it with an area floor (a portrait's face covers a few percent of the image, a false hit is tiny).
Figures: `docs/categories.md`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pyarrow as pa

from filters.base import CpuScorer, SampleBatch, ScorerUnavailable
from flywheel.schema import Column

VIEW = 256  # shorter side the cascade runs on
MIN_FACE = 24  # px in that view: smaller detections are mostly texture
CASCADE = "haarcascade_frontalface_default.xml"


def cascade_path() -> Path:
    """The frontal-face cascade shipped inside OpenCV's wheel."""
    import cv2

    return Path(cv2.data.haarcascades) / CASCADE


class FacesScorer(CpuScorer):
    """`face_count` and `face_area_fraction` from OpenCV's frontal-face Haar cascade on the 256 px view."""

    name: ClassVar[str] = "faces"
    # Opt-in like the other category inputs: the cascade costs tens of ms per image on one core.
    default_on: ClassVar[bool] = False
    view_short_side: ClassVar[int] = VIEW
    columns: ClassVar[tuple[Column, ...]] = (
        Column(
            "face_count",
            pa.int16(),
            "faces",
            f"Frontal faces found by OpenCV's Haar cascade ({CASCADE}) on the {VIEW} px view, at least "
            f"{MIN_FACE} px wide there; profiles and tiny faces are missed. Null for undecodable images.",
            owner="faces",
        ),
        Column(
            "face_area_fraction",
            pa.float32(),
            "fraction",
            "Area of the largest detected face box over the image area (0 when none): a portrait's face covers "
            "a few percent or more, a stray false hit far less.",
            owner="faces",
        ),
    )

    def __init__(self) -> None:
        super().__init__()
        self._cascade: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_cascade": None}  # cv2 objects do not pickle; each worker loads its own

    def _load(self) -> Any:
        if self._cascade is None:
            import cv2

            path = cascade_path()
            cascade = cv2.CascadeClassifier(str(path))
            if cascade.empty():
                raise ScorerUnavailable(f"faces: OpenCV's cascade {path} is missing or unreadable")
            self._cascade = cascade
        return self._cascade

    def detect(self, gray: np.ndarray) -> list[tuple[int, int, int, int]]:
        """Face boxes (x, y, w, h) in `gray`'s pixels."""
        import cv2

        cv2.setNumThreads(1)  # one thread per task: the decode tasks already fill every core
        boxes = self._load().detectMultiScale(
            np.ascontiguousarray(gray), scaleFactor=1.15, minNeighbors=8, minSize=(MIN_FACE, MIN_FACE)
        )
        return [tuple(int(v) for v in b) for b in boxes] if len(boxes) else []

    def score(self, batch: SampleBatch) -> dict[str, Sequence[Any]]:
        counts: list[int | None] = []
        areas: list[float | None] = []
        for d in batch.decoded:
            if not d.ok:
                counts.append(None)
                areas.append(None)
                continue
            gray = d.gray_at(VIEW)
            boxes = self.detect(gray)
            counts.append(len(boxes))
            areas.append(max((w * h for _, _, w, h in boxes), default=0) / float(gray.shape[0] * gray.shape[1]))
        return {"face_count": counts, "face_area_fraction": areas}
