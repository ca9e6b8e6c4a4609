"""Training throughput of the MMDiT: samples/s, tokens/s, MFU against the H100's dense bf16 peak, data wait.

Runs the real trainer (shard loader with bounded decode, MiniLM condition encoder, flow-matching step with
AdamW, clipping and EMA) on a synthetic curated shard set written to a temporary workspace, so the data-wait
fraction includes Parquet reads and image decoding. FLOPs follow `trainer/flops.py` (formula in
docs/trainer.md); MFU = achieved model FLOP/s / peak.

    python3 bench/train_throughput.py --config base_300m --resolution 256             # on an H100
    python3 bench/train_throughput.py --config tiny --resolution 256 --batch-size 4 --steps 5 --warmup 2 \
        --precision fp32 --device cpu --threads 2                                        # CPU smoke run
    python3 bench/train_throughput.py --list                                            # presets and sizes
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pyarrow as pa
import torch
from PIL import Image, ImageDraw

from flywheel.ids import sample_id
from flywheel.imaging import encode_jpeg
from flywheel.schema import core_schema
from flywheel.workspace import Workspace
from trainer.config import MODEL_PRESETS, StageConfig
from trainer.flops import H100_BF16_DENSE_TFLOPS, training_flops_per_sample
from trainer.loop import Trainer
from trainer.model.mmdit import MMDiT


def write_shards(root: Path, rows: int, resolution: int, ti2i_every: int) -> None:
    """JPEG shapes with captions; every `ti2i_every`-th row an edit (so the TI2I path is timed too)."""
    rng = np.random.default_rng(0)
    folder = root / "curated" / "bench"
    folder.mkdir(parents=True)
    records = []
    for i in range(rows):
        image = Image.fromarray(rng.integers(0, 255, (resolution, resolution, 3), dtype=np.uint8))
        ImageDraw.Draw(image).ellipse(
            (resolution * 0.2, resolution * 0.2, resolution * 0.8, resolution * 0.8),
            fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
        )
        data = encode_jpeg(np.asarray(image))
        edit = ti2i_every > 0 and i % ti2i_every == 0
        caption = f"a coloured circle on noise, sample {i}"
        source = encode_jpeg(np.asarray(image.transpose(Image.Transpose.FLIP_LEFT_RIGHT))) if edit else None
        records.append(
            {
                "id": sample_id("bench", f"bench#{i}"),
                "uri": f"bench#{i}",
                "image": data,
                "width": resolution,
                "height": resolution,
                "caption": caption,
                "task": "TI2I" if edit else "T2I",
                "source_image": source,
            }
        )
    # through the shard store: the trainer reads only shards with a completion marker
    table = pa.Table.from_pylist(records, schema=core_schema())
    Workspace.at(root).curated_store("bench").write(0, table, "bench", row_group_size=64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="base_300m", choices=sorted(MODEL_PRESETS))
    ap.add_argument("--resolution", type=int, default=256)
    ap.add_argument("--patch-size", type=int, default=16, help="pixel patch (16 at 256 px = 256 tokens)")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=30, help="timed steps")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps (compile, allocator, caches)")
    ap.add_argument("--workers", type=int, default=8, help="loader worker processes")
    ap.add_argument("--t2i-ratio", type=float, default=0.9)
    ap.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--peak-tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    ap.add_argument("--out", type=Path, default=None, help="write the figures as JSON here")
    ap.add_argument("--list", action="store_true", help="print presets with parameter counts and exit")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.list:
        for name, cfg in MODEL_PRESETS.items():
            with torch.device("meta"):
                model = MMDiT(cfg, in_channels=3 * 16 * 16, cond_dim=384)
            print(
                f"{name:10s} hidden {cfg.hidden:5d} depth {cfg.depth:3d} heads {cfg.heads:3d} "
                f"params {sum(p.numel() for p in model.parameters()) / 1e6:8.1f}M"
            )
        return

    with tempfile.TemporaryDirectory(prefix="flywheel-bench-") as tmp:
        rows = max(64, args.batch_size * 8)
        write_shards(Path(tmp), rows, args.resolution, ti2i_every=10 if args.t2i_ratio < 1 else 0)
        cfg = StageConfig.from_dict(
            {
                "name": "bench",
                "model": {"preset": args.config},
                "data": {
                    "recipes": ["bench"],
                    "resolutions": [args.resolution],
                    "aspect_ratios": [1.0],
                    "batch_size": args.batch_size,
                    "num_workers": args.workers,
                    "t2i_ratio": args.t2i_ratio,
                },
                "latents": {"patch_size": args.patch_size},
                "train": {
                    "steps": args.warmup + args.steps,
                    "precision": args.precision,
                    "compile": args.compile,
                    "device": args.device,
                    "log_every": 10**9,
                    "checkpoint_every": 10**9,
                },
            }
        )
        trainer = Trainer(cfg, Workspace.at(tmp), log=lambda m: print(m, file=sys.stderr))
        batches = trainer.batches()
        for _ in range(args.warmup):
            trainer.train_step(batches)
        logs = [trainer.train_step(batches) for _ in range(args.steps)]

    seconds = sum(e.seconds for e in logs)
    samples = sum(e.samples for e in logs)
    tokens = sum(e.tokens for e in logs)
    n_img = (args.resolution // args.patch_size) ** 2
    n_txt = tokens / samples - n_img  # mean text tokens (edits add source tokens; counted on the image side)
    t2i_flops = training_flops_per_sample(trainer.model, n_img, round(n_txt))
    achieved = t2i_flops * samples / seconds
    device = (
        torch.cuda.get_device_name()
        if trainer.device.startswith("cuda")
        else f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads"
    )
    report = {
        "config": args.config,
        "params_m": round(sum(p.numel() for p in trainer.model.parameters()) / 1e6, 2),
        "resolution": args.resolution,
        "patch_size": args.patch_size,
        "image_tokens": n_img,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "compile": args.compile,
        "device": device,
        "timed_steps": args.steps,
        "samples_per_s": samples / seconds,
        "tokens_per_s": tokens / seconds,
        "train_tflops_per_sample": t2i_flops / 1e12,
        "achieved_tflops": achieved / 1e12,
        "mfu_vs_peak": achieved / (args.peak_tflops * 1e12),
        "peak_tflops": args.peak_tflops,
        "data_wait_fraction": sum(e.data_seconds for e in logs) / seconds,
        "step_seconds_mean": seconds / len(logs),
        "final_loss": logs[-1].loss,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
