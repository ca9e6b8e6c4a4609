"""Throughput of the CPU stage-1 scorers against a full-decode baseline, in the same run.

Baseline: Pillow full decode (`Image.open(...).convert("RGB")`) of every file.
Scorers: what one scoring task does per sample: bounded decode at the view the scorers need
(JPEG draft mode), then every CPU scorer (broken, resolution, dedup, rotation, entropy, tokens).
The ratio is scorer images/s over baseline images/s: >= 1.0 means the whole cheap CPU stage
costs less than one full decode. Single process, so the figure is per core.

    python3 bench/score_throughput.py [--n 64] [--side 2048] [--repeat 3] [--out docs/benchmarks.md]
"""

from __future__ import annotations

import argparse
import io
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from filters.base import Counters, SampleBatch
from filters.config import ScoringConfig
from filters.registry import build, decode_short_side, is_model, resolve
from flywheel.imaging import decode

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "immunohistochemistry")


def make_files(n: int, side: int, seed: int = 0) -> list[bytes]:
    """Realistic JPEGs: photo crops resized so the longer side is `side`, quality 85-95."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        photo = getattr(data, PHOTOS[i % len(PHOTOS)])()
        if photo.ndim == 2:
            photo = np.stack([photo] * 3, axis=-1)
        h, w = photo.shape[:2]
        ch, cw = int(h * rng.uniform(0.6, 1.0)), int(w * rng.uniform(0.6, 1.0))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        img = Image.fromarray(photo[y : y + ch, x : x + cw])
        scale = side / max(img.size)
        img = img.resize((int(img.width * scale), int(img.height * scale)), Image.Resampling.BICUBIC)
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=int(rng.integers(85, 96)))
        out.append(buf.getvalue())
    return out


def baseline(files: list[bytes]) -> float:
    start = time.perf_counter()
    for blob in files:
        with Image.open(io.BytesIO(blob)) as img:
            img.convert("RGB").load()
    return time.perf_counter() - start


def scorers_pass(files: list[bytes], scorers: list, view: int) -> float:
    captions = ["a photograph of an everyday scene, with people and objects in daylight"] * len(files)
    start = time.perf_counter()
    decoded = [decode(blob, view) for blob in files]
    batch = SampleBatch(
        ids=[str(i) for i in range(len(files))],
        images=files,
        captions=captions,
        decoded=decoded,
        uris=[f"f{i}.jpg" for i in range(len(files))],
    )
    for scorer in scorers:
        scorer(batch)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--side", type=int, default=2048, help="longer side of the test JPEGs")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    files = make_files(args.n, args.side)
    cfg = ScoringConfig()
    classes = [c for c in resolve(None) if not is_model(c)]
    scorers = [build(c, cfg) for c in classes]
    view = decode_short_side(cfg)  # the fixed view every scoring run decodes (deterministic columns)
    scorers_pass(files[:4], scorers, view)  # warm up (tokenizer and weights load once)
    for scorer in scorers:
        scorer.counters = Counters()  # per-scorer figures exclude the one-off loads of the warm-up
    base_t, score_t, wide_t = [], [], []
    for _ in range(args.repeat):
        base_t.append(baseline(files))
        score_t.append(scorers_pass(files, scorers, view))
        wide_t.append(scorers_pass(files, scorers, 256))
    base_ips = args.n / statistics.median(base_t)
    score_ips = args.n / statistics.median(score_t)
    wide_ips = args.n / statistics.median(wide_t)
    per_scorer = {s.name: 1000 * s.counters.seconds / max(1, s.counters.rows) for s in scorers}
    mb = sum(len(f) for f in files) / len(files) / 1e6
    lines = [
        f"### CPU stage-1 scorers vs full decode ({args.n} JPEGs, longer side {args.side}px, {mb:.2f} MB avg)",
        "",
        f"machine: {platform.processor() or platform.machine()}, {_cores()} cores, Python {platform.python_version()}"
        f"; single process; median of {args.repeat}",
        "",
        "| pass | images/s | ms/image |",
        "|---|---|---|",
        f"| baseline: Pillow full decode | {base_ips:.1f} | {1000 / base_ips:.1f} |",
        f"| decode (draft, view {view}px) + {len(scorers)} CPU scorers | {score_ips:.1f} | {1000 / score_ips:.1f} |",
        f"| same at the 256px view NSFW/CLIP prep needs | {wide_ips:.1f} | {1000 / wide_ips:.1f} |",
        "",
        f"**ratio (scorers / baseline): {score_ips / base_ips:.2f}** (>= 1.0: the cheap filters together cost less "
        f"than one full decode); at the 256px view: {wide_ips / base_ips:.2f}",
        "",
        "per-scorer cost after decoding (ms/image): " + ", ".join(f"{k} {v:.2f}" for k, v in per_scorer.items()),
        "",
        f"command: `python3 bench/score_throughput.py --n {args.n} --side {args.side} --repeat {args.repeat}`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


def _cores() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
