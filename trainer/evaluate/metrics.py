"""Offline scores of one generated image: OCR accuracy, classifier agreement, image statistics, edit fidelity.

Why these signals: they run without any download (tesseract from Debian, EfficientNet-Lite0 weights from a
package), and each maps to a failure tag the router understands (flywheel/evaluation.py FAILURE_TAGS). Tags
come from hard thresholds; the scores beside them are continuous (soft margins to those thresholds, class
probability, OCR accuracy plus an ink-layout score), so several seeds of one prompt rank instead of tying:
the RL track builds preference pairs from that ranking.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from flywheel.errors import RunFailed

# Thresholds, named so the docs and tests can cite them.
OCR_PASS = 0.8  # character accuracy needed for a text prompt to pass
OCR_MIN_CHARS = 1  # fewer alphanumerics read than this: text_unreadable
LABEL_TOPK = 5  # the expected class must be among the classifier's top-k
MIN_ENTROPY_BITS = 2.0
MIN_CONTRAST = 0.04
MAX_CLIPPED = 0.5
MAX_HIGHFREQ = 4.0  # Laplacian energy over variance: ~20 for white noise, well below 1 for photos
EDIT_MIN_CHANGE = 0.02  # mean absolute difference to the source below this: edit_ignored
EDIT_MIN_CORR = 0.2  # luma correlation with the source below this: edit_destroyed


def _normalise(text: str) -> str:
    return re.sub(r"[^0-9a-z]", "", text.lower())


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(read: str, expected: str) -> float:
    """1 - edit distance / len(expected), over lower-case alphanumerics, clipped to [0, 1]."""
    r, e = _normalise(read), _normalise(expected)
    if not e:
        raise ValueError("expected text has no letters or digits")
    return max(0.0, 1.0 - levenshtein(r, e) / len(e))


@dataclass(frozen=True)
class Tesseract:
    """The `tesseract` CLI, called per image with a timeout (no pytesseract)."""

    binary: str = "tesseract"
    lang: str = "eng"
    psm: int = 6
    timeout_s: float = 30.0
    min_side: int = 256  # OCR needs letters of a readable size: small outputs are upscaled first

    def check(self) -> None:
        if shutil.which(self.binary) is None:
            raise RuntimeError(
                f"{self.binary} not found: install it (apt-get install tesseract-ocr) to score text-rendering prompts"
            )

    def read(self, image: Image.Image) -> str:
        scale = max(1.0, self.min_side / min(image.size))
        if scale > 1:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.BICUBIC)
        with tempfile.TemporaryDirectory(prefix="flywheel-ocr-") as tmp:
            path = Path(tmp) / "in.png"
            image.convert("RGB").save(path)
            try:
                done = subprocess.run(
                    [self.binary, str(path), "stdout", "-l", self.lang, "--psm", str(self.psm)],
                    capture_output=True,
                    text=True,
                    timeout=self.timeout_s,
                    check=False,
                )
            except subprocess.TimeoutExpired as exc:
                raise RunFailed(f"tesseract took longer than {self.timeout_s}s on one image") from exc
        if done.returncode != 0:
            raise RunFailed(f"tesseract failed ({done.returncode}): {done.stderr.strip()[:300]}")
        return done.stdout.strip()


def text_metrics(ocr: Tesseract, image: Image.Image, expected: str) -> tuple[dict[str, float], list[str], str]:
    read = ocr.read(image)
    metrics, tags = text_metrics_read(image, expected, read)
    return metrics, tags, read


def read_many(ocr: Tesseract, images: Sequence[Image.Image], workers: int = 4) -> list[str]:
    """OCR several images with concurrent tesseract processes (each is a subprocess, so threads suffice)."""
    from concurrent.futures import ThreadPoolExecutor

    if len(images) <= 1:
        return [ocr.read(im) for im in images]
    with ThreadPoolExecutor(max_workers=min(workers, len(images))) as pool:
        return list(pool.map(ocr.read, images))


def text_metrics_read(image: Image.Image, expected: str, read: str) -> tuple[dict[str, float], list[str]]:
    """`text_metrics` for text OCR already read (see `read_many`)."""
    acc = char_accuracy(read, expected)
    tags: list[str] = []
    if len(_normalise(read)) < OCR_MIN_CHARS:
        tags.append("text_unreadable")
    elif acc < OCR_PASS:
        tags.append("text_wrong")
    return {"ocr_char_acc": acc, "ocr_chars_read": float(len(_normalise(read))), "ink_score": ink_score(image)}, tags


class ObjectClassifier:
    """EfficientNet-Lite0 (ImageNet) from flywheel.models: probability and rank of the expected class."""

    def __init__(self, device: str = "cpu") -> None:
        from flywheel.models.efficientnet_lite import IMAGENET_CLASSES, load_efficientnet_lite0, preprocess

        self.model = load_efficientnet_lite0(device)
        self.classes = IMAGENET_CLASSES
        self.preprocess = preprocess
        self.device = device

    @torch.no_grad()
    def probabilities(self, images: Sequence[Image.Image]) -> np.ndarray:
        logits = self.model(self.preprocess(images).to(self.device))
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    def metrics(self, probs: np.ndarray, label: str) -> tuple[dict[str, float], list[str]]:
        idx = self.classes.index(label)
        rank = int((probs > probs[idx]).sum()) + 1
        return {"label_prob": float(probs[idx]), "label_rank": float(rank)}, (
            [] if rank <= LABEL_TOPK else ["object_missing"]
        )


def soft_min(value: float, threshold: float) -> float:
    """0 at 0, 0.5 at the pass threshold, 1 at twice it: a continuous score of a `value >= threshold` check."""
    return float(np.clip(value / (2 * threshold), 0.0, 1.0))


def soft_max(value: float, threshold: float) -> float:
    """1 at 0, 0.5 at the threshold, 0 at twice it: a continuous score of a `value <= threshold` check."""
    return float(np.clip(1.0 - value / (2 * threshold), 0.0, 1.0))


def ink_score(image: Image.Image) -> float:
    """How much the image looks like rendered text, in [0, 1], without reading it: a share of dark "ink"
    pixels typical of lettering (peak at ~12% of the page), on a page of one dominant tone, with sharp
    strokes (edge energy at ink borders). It ranks unreadable outputs of a text prompt: an output with
    letter-like strokes is nearer to legible than a smear, even when OCR reads nothing in either."""
    luma = np.asarray(image.convert("L"), dtype=np.float32) / 255.0
    page = float(np.median(luma))
    ink = np.abs(luma - page) > 0.35
    share = float(ink.mean())
    share_score = float(np.exp(-(((share - 0.12) / 0.08) ** 2)))
    page_score = float(np.clip((np.abs(luma - page) < 0.1).mean() / 0.6, 0.0, 1.0))
    gy, gx = np.abs(np.diff(luma, axis=0)), np.abs(np.diff(luma, axis=1))
    edge = float((gy.mean() + gx.mean()) / 2)
    edge_score = float(np.clip(edge / 0.08, 0.0, 1.0))
    return (share_score + page_score + edge_score) / 3


def quality_metrics(image: Image.Image, document: bool = False) -> tuple[dict[str, float], list[str]]:
    """Luma entropy (bits), contrast (luma std / 255), clipped fraction, high-frequency noise ratio.

    `document`: text-rendering prompts (black letters on a white page) are legitimately low-entropy and mostly
    saturated, so for them only contrast and noise decide `low_quality`. `quality_score` is the mean of the
    checks' soft scores (0.5 at each threshold), continuous so that outputs rank."""
    rgb = np.asarray(image.convert("RGB"), dtype=np.float32)
    luma = 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2]
    hist = np.bincount(np.clip(luma, 0, 255).astype(np.int64).ravel(), minlength=256).astype(np.float64)
    p = hist[hist > 0] / hist.sum()
    entropy = float(-(p * np.log2(p)).sum())
    contrast = float(luma.std() / 255.0)
    clipped = float(((rgb <= 2) | (rgb >= 253)).mean())
    lap = 4 * luma[1:-1, 1:-1] - luma[:-2, 1:-1] - luma[2:, 1:-1] - luma[1:-1, :-2] - luma[1:-1, 2:]
    highfreq = float(lap.var() / max(luma.var(), 1e-6)) if luma.shape[0] > 2 and luma.shape[1] > 2 else 0.0
    checks = [contrast >= MIN_CONTRAST, highfreq <= MAX_HIGHFREQ]
    soft = [soft_min(contrast, MIN_CONTRAST), soft_max(highfreq, MAX_HIGHFREQ)]
    if not document:
        checks += [entropy >= MIN_ENTROPY_BITS, clipped <= MAX_CLIPPED]
        soft += [soft_min(entropy, MIN_ENTROPY_BITS), soft_max(clipped, MAX_CLIPPED)]
    metrics = {
        "entropy_bits": entropy,
        "contrast": contrast,
        "clipped_fraction": clipped,
        "highfreq_ratio": highfreq,
        "quality_score": float(np.mean(soft)),
    }
    return metrics, ([] if all(checks) else ["low_quality"])


def edit_metrics(output: Image.Image, source: Image.Image) -> tuple[dict[str, float], list[str]]:
    """Change (mean absolute difference) and structure kept (luma correlation) relative to the source."""
    a = np.asarray(output.convert("RGB"), dtype=np.float32) / 255.0
    b = np.asarray(source.convert("RGB").resize(output.size, Image.Resampling.BICUBIC), dtype=np.float32) / 255.0
    mae = float(np.abs(a - b).mean())
    la, lb = a.mean(-1).ravel(), b.mean(-1).ravel()
    corr = float(np.corrcoef(la, lb)[0, 1]) if la.std() > 1e-6 and lb.std() > 1e-6 else 0.0
    tags = []
    if mae < EDIT_MIN_CHANGE:
        tags.append("edit_ignored")
    if corr < EDIT_MIN_CORR:
        tags.append("edit_destroyed")
    score = max(0.0, corr) * min(1.0, mae / (2 * EDIT_MIN_CHANGE))
    return {"source_mae": mae, "source_corr": corr, "edit_score": score}, tags
