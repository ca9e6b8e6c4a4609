"""Caption throughput: batched generation of a random-weight Qwen2-VL, and the endpoint client on loopback.

    python3 bench/caption_throughput.py --size 2b --images 64 --batch 16 --new-tokens 128   # on a GPU
    python3 bench/caption_throughput.py --size tiny --images 8 --batch 4 --new-tokens 16    # CPU smoke run

Random weights are fine for speed: the work per token does not depend on the weights. Greedy
decoding with EOS suppressed so every sequence generates exactly --new-tokens tokens (random
weights would otherwise stop at arbitrary points). The endpoint figure is requests/s of
`OpenAIVlm` against `captioners.serve` on 127.0.0.1 serving the same model, at --concurrency.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from captioners.config import OpenAIConfig, TransformersConfig
from captioners.serve import LoopbackServer, build_app
from captioners.tiny_vlm import build_random_vlm
from captioners.vlm import VlmRequest, bounded_png
from captioners.vlm_openai import OpenAIVlm
from captioners.vlm_transformers import TransformersVlm, resolve_device


def structured_validity(model_dir: str, pngs: list[bytes], a: argparse.Namespace) -> dict[str, float]:
    """Share of structured captions valid at the first attempt, after the one repair, and failed."""
    from captioners.captioner import Captioner
    from captioners.config import CaptionConfig, GenerationConfig, TypeBackends

    budget = {k: a.new_tokens for k in ("general", "text", "knowledge", "structured")}
    cfg = CaptionConfig(
        types=TypeBackends(text=None, structured="transformers"),
        transformers=TransformersConfig(model_path=model_dir, batch_size=a.batch, max_image_side=a.image_side),
        generation=GenerationConfig(max_new_tokens=budget),
    )
    with tempfile.TemporaryDirectory() as cache:
        out = Captioner(cfg, ("structured",), cache)(pngs, [None] * len(pngs))
    status = out["caption_structured_status"]
    n = max(1, len(status))
    return {
        "images": len(status),
        "valid_first": round(status.count("ok") / n, 3),
        "valid_after_repair": round((status.count("ok") + status.count("repaired")) / n, 3),
        "failed": round(status.count("failed") / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="tiny", choices=["tiny", "2b"])
    ap.add_argument("--images", type=int, default=8)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--image-side", type=int, default=448)
    ap.add_argument("--concurrency", type=int, default=4)
    ap.add_argument("--requests", type=int, default=8)
    ap.add_argument("--out", default="docs/caption_throughput.json")
    a = ap.parse_args()
    import torch

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model, _ = build_random_vlm(tmp, a.size)
        params = sum(p.numel() for p in model.parameters())
        del model
        vlm = TransformersVlm(TransformersConfig(model_path=tmp, batch_size=a.batch))
        vlm.model.generation_config.eos_token_id = None  # fixed-length generation for a fair tokens/s
        vlm.model.generation_config.suppress_tokens = None
        build_s = time.perf_counter() - t0
        rng = np.random.default_rng(0)
        pngs = [
            bounded_png(Image.fromarray(rng.integers(0, 255, (a.image_side, a.image_side, 3), np.uint8)), a.image_side)
            for _ in range(a.images)
        ]
        reqs = [VlmRequest(p, "Describe this image comprehensively.", a.new_tokens) for p in pngs]
        vlm.generate(reqs[: a.batch])  # warm-up (kernels, allocator)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        replies = vlm.generate(reqs)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        gen_s = time.perf_counter() - t0
        tokens = sum(r.output_tokens for r in replies)
        with LoopbackServer(build_app(vlm, model_name=a.size)) as url:
            client = OpenAIVlm(OpenAIConfig(base_url=url, model=a.size, concurrency=a.concurrency), Path(tmp) / "cache")
            ep_reqs = [VlmRequest(pngs[i % len(pngs)], f"Describe image {i}.", a.new_tokens) for i in range(a.requests)]
            t0 = time.perf_counter()
            ep = client.generate(ep_reqs)
            ep_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            client.generate(ep_reqs)  # all cached: the client's own overhead
            cached_s = time.perf_counter() - t0
        validity = structured_validity(tmp, pngs, a)
    errors = [r.error for r in ep if r.error]
    report = {
        "machine": platform.machine(),
        "device": resolve_device("auto"),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "command": "python3 " + " ".join(sys.argv),
        "size": a.size,
        "parameters": params,
        "dtype": str(vlm.model.dtype),
        "images": a.images,
        "batch": a.batch,
        "new_tokens": a.new_tokens,
        "image_side": a.image_side,
        "build_and_load_s": round(build_s, 1),
        "generate_s": round(gen_s, 2),
        "images_per_s": round(a.images / gen_s, 3),
        "output_tokens_per_s": round(tokens / gen_s, 1),
        "structured_validity": validity,
        "endpoint": {
            "requests": a.requests,
            "concurrency": a.concurrency,
            "seconds": round(ep_s, 2),
            "requests_per_s": round(a.requests / ep_s, 3),
            "errors": len(errors),
            "cached_requests_per_s": round(a.requests / max(cached_s, 1e-9), 1),
        },
    }
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(report, indent=1), encoding="utf-8")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
