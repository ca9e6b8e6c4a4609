"""What every bench prints the same way: the machine a figure was measured on, and the JSON report.

A figure in docs/ names its machine; spelling that line once here keeps benches from drifting into a dozen
slightly different descriptions (and from claiming "no GPU" on a machine that has one).
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


def machine() -> str:
    """One line: cores, architecture, GPU or not, Python, and the load average when the bench started.

    The load matters on a shared machine: it slows both sides of a ratio but makes absolute figures pessimistic.
    """
    gpu = "no GPU"
    try:
        import torch

        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    except ImportError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"{os.cpu_count()}-core {platform.machine()} container, {gpu}, Python {platform.python_version()}, "
        f"load average {load:.1f}"
    )


def emit(report: dict[str, Any], out: Path | None) -> None:
    """Print the report as JSON and, with --out, write the same text there (UTF-8, scripts kept readable)."""
    text = json.dumps(report, indent=2, ensure_ascii=False)
    print(text)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n", encoding="utf-8")


def shrink(img: Image.Image, short: int) -> np.ndarray:
    """RGB array with the shorter side at most `short`: JPEG draft decode to about twice that, then a box filter.

    The benches that build training or test views from large package photos all start here, so their views
    are made the same way (a draft decode is exact enough for a view and several times cheaper).
    """
    img.draft("RGB", (short * 2, short * 2))
    img = img.convert("RGB")
    scale = short / min(img.size)
    if scale < 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.uint8)
