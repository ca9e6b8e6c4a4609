"""Dashboard latency: p50/p95 of case pages and data views with 100k bad cases and a 1M-row pool.

    python3 bench/dashboard_latency.py                       # 1M pool rows, 100k cases, 200 requests per page
    python3 bench/dashboard_latency.py --pool 100000 --cases 10000 --requests 50   # quick run

Builds a synthetic workspace with the core's own writers (pool shards of score columns only, no image bytes,
generated with numpy/pyarrow; a real `flywheel select`; the bad-case store's ingest and routing; a caption
index of random unit vectors), serves the app with uvicorn on 127.0.0.1 and times each request with httpx
end to end as the browser waits for the HTML (server-side rendering included; images and the neighbours
fragment, which the page loads afterwards, are timed as their own rows). The aggregate cache is built
before timing; its build time is reported separately ("cold").
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import random
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dashboards.app import create_app
from dashboards.neighbours import NeighbourFinder
from dashboards.users import UserStore
from flywheel.badcases import BadCase, BadCaseStore, Route
from flywheel.recipes import load_recipe
from flywheel.retrieval import EmbeddingSpace, RetrievalEngine
from flywheel.retrieval.engine import vectors_to_arrow
from flywheel.retrieval.space import l2_normalise
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

PASSWORD = "bench password"
SPACE = EmbeddingSpace("bench/random-unit", 64, text_queries=True)
CATEGORIES = ("photo", "text", "art", "people", "animal", "product", "scene", "food")
RECIPE = """name: bench
description: latency bench recipe
stage: 1
resolution: 256
tasks: [T2I]
rules:
  - {name: broken, column: broken_reason, is_null: true, why: cannot be decoded}
  - {name: min_side, column: resolution_min_side, min: 256, why: shorter side below the stage resolution}
  - {name: nsfw, column: nsfw_score, max: 0.7, why: open_nsfw probability too high}
  - {name: entropy, column: entropy_bits, min: 0.2, why: flat image}
  - {name: clip, column: clip_score, min: 0.2, why: caption does not describe the image}
  - {name: caption_tokens, column: caption_tokens, min: 3, max: 1024, why: caption too short or too long}
"""


class RandomText:
    """Stands in for the text embedder (the neighbours row times the index search, not a model)."""

    space = SPACE

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        rng = np.random.default_rng(abs(hash(tuple(texts))) % 2**32)
        return l2_normalise(rng.normal(size=(len(texts), SPACE.dim)).astype(np.float32))


def build_pool(ws: Workspace, rows: int, shards: int, rng: np.random.Generator) -> None:
    store = ShardStore(ws.pool_dir)
    per = rows // shards
    for part in range(shards):
        n = per if part < shards - 1 else rows - per * (shards - 1)
        raw = rng.integers(0, 2**63, size=(n, 2), dtype=np.int64)
        ids = [f"{a & (2**64 - 1):016x}{b & (2**64 - 1):016x}" for a, b in raw.tolist()]
        side = rng.integers(128, 2048, n)
        broken = np.where(rng.random(n) < 0.01, "truncated", None)
        table = pa.table(
            {
                "id": ids,
                "uri": [f"bench://{part}/{i}" for i in range(n)],
                "partition": pa.array(np.full(n, part, dtype=np.int32)),
                "caption": [f"a {CATEGORIES[i % 8]} picture {i}" for i in range(n)],
                "task": ["T2I"] * n,
                "category": [CATEGORIES[c] for c in rng.integers(0, 8, n)],
                "width": pa.array(side.astype(np.int32)),
                "height": pa.array((side * rng.uniform(0.5, 1.5, n)).astype(np.int32)),
                "file_bytes": pa.array(rng.integers(10_000, 2_000_000, n)),
                "broken_reason": pa.array(broken.tolist(), pa.string()),
                "resolution_min_side": pa.array(side.astype(np.int32)),
                "nsfw_score": pa.array(rng.beta(0.5, 6, n).astype(np.float32)),
                "entropy_bits": pa.array(rng.gamma(4, 1.2, n).astype(np.float32)),
                "clip_score": pa.array(rng.normal(0.3, 0.06, n).astype(np.float32)),
                "caption_tokens": pa.array(rng.integers(1, 200, n).astype(np.int32)),
            }
        )
        store.write(part, table, fingerprint=f"bench:{part}", row_group_size=8192)
    store.write_manifest({})


def build_cases(ws: Workspace, n: int, rng: np.random.Generator) -> None:
    import io

    from PIL import Image

    store = BadCaseStore.for_workspace(ws.root)
    images = []
    for i in range(20):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)).save(buf, format="PNG")
        images.append(store.put_image(buf.getvalue(), f"bench image {i}"))
    cases = []
    for i in range(n):
        cases.append(
            BadCase(
                content_key=hashlib.sha256(f"bench case {i}".encode()).hexdigest(),
                kind="bad",
                source=("evaluation", "mining", "feedback")[i % 3],
                prompt=f"a {CATEGORIES[i % 8]} with {i % 5000} things",
                origin=f"bench:{i}",
                task="T2I",
                output_image=images[i % 20],
                metrics={"label_prob": float(rng.random()), "ocr_char_acc": float(rng.random())},
                reward=float(rng.random()),
                failure_tags=[["object_missing"], ["low_quality"], ["text_wrong"]][i % 3],
                checkpoint=f"stage1/step-{1000 * (1 + i % 10):07d}",
                step=1000 * (1 + i % 10),
                expected_label=CATEGORIES[i % 8],
                created_at=f"2026-{1 + (i % 12):02d}-{1 + (i % 28):02d}T00:00:00+00:00",
            )
        )
    store.ingest(cases)
    ev = {"rule": "uncovered_concept", "rule_track": "pretrain", "why": "bench", "conditions": {}}
    store.record_routes(Route(c["case_id"], "pretrain", "rule:uncovered_concept", ev) for c in store.list()[: n // 2])


def build_index(ws: Workspace, rows: int, rng: np.random.Generator) -> None:
    from flywheel.retrieval.metadata import pool_metadata

    sample = pool_metadata(ws).slice(0, rows)
    vectors = l2_normalise(rng.normal(size=(sample.num_rows, SPACE.dim)).astype(np.float32))
    RetrievalEngine(ws.index_dir).add("caption", SPACE, sample.append_column("vector", vectors_to_arrow(vectors)))


def build_runs(ws: Workspace) -> None:
    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    with (ws.runs_dir / "train-stage1.jsonl").open("w") as fh:
        for step in range(10, 20_010, 10):
            fh.write(json.dumps({"step": step, "loss": 2.0 / (1 + step / 500), "samples_per_s": 40.0}) + "\n")
    for k in range(1, 11):
        d = ws.evaluations_dir / f"stage1-step-{1000 * k:07d}"
        d.mkdir(parents=True, exist_ok=True)
        (d / "summary.json").write_text(json.dumps({"pass_rate": 0.3 + 0.04 * k, "outputs": 64, "categories": {}}))


def serve(app: object) -> tuple[str, object, threading.Thread]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server, thread


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pool", type=int, default=1_000_000)
    ap.add_argument("--shards", type=int, default=100)
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--index-rows", type=int, default=20_000)
    ap.add_argument("--requests", type=int, default=200, help="timed requests per page kind")
    ap.add_argument("--workspace", type=Path, default=None, help="reuse/keep this workspace (default: temporary)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures here")
    a = ap.parse_args()
    import httpx

    rng = np.random.default_rng(0)
    root = a.workspace or Path(tempfile.mkdtemp(prefix="dash-bench-"))
    ws = Workspace.at(root)
    built: dict[str, float] = {}
    if not (ws.pool_dir / "_manifest.json").is_file():
        t = time.perf_counter()
        build_pool(ws, a.pool, a.shards, rng)
        built["pool"] = time.perf_counter() - t
        t = time.perf_counter()
        (root / "bench.yaml").write_text(RECIPE)
        select(ws, load_recipe(str(root / "bench.yaml")))
        built["select"] = time.perf_counter() - t
        t = time.perf_counter()
        build_cases(ws, a.cases, rng)
        built["cases"] = time.perf_counter() - t
        build_index(ws, a.index_rows, rng)
        build_runs(ws)
        UserStore(ws.root).add("eng", "engineer", PASSWORD, replace=True)
    print("built", {k: round(v, 1) for k, v in built.items()}, flush=True)

    app = create_app(ws.root, neighbours=NeighbourFinder(ws, RandomText()))
    t = time.perf_counter()
    app.state.cache.cursor()
    cold = time.perf_counter() - t
    print(f"aggregate cache built in {cold:.1f}s", flush=True)
    base, server, thread = serve(app)
    client = httpx.Client(base_url=base, timeout=60)
    page = client.get("/login")
    token = page.text.split('name="csrf-token" content="')[1].split('"', 1)[0]
    client.post("/login", data={"username": "eng", "password": PASSWORD, "csrf": token})

    store = app.state.store
    with store._connect() as con:
        case_ids = [r[0] for r in con.execute("SELECT case_id FROM cases ORDER BY random() LIMIT 2000")]
    cur = app.state.cache.cursor()
    pool_ids = [r[0] for r in cur.execute("SELECT id FROM gallery USING SAMPLE 500 ROWS").fetchall()]
    reasons = list(app.state.cache.aggregates["reasons"]["bench"])
    image = store.list(limit=1)[0]["output_image"]
    kinds = {
        "case page": lambda: f"/case/{random.choice(case_ids)}",
        "case page (filtered queue)": lambda: f"/case/{random.choice(case_ids)}?source=feedback&undecided=1",
        "neighbours fragment": lambda: f"/case/{random.choice(case_ids)}/neighbours",
        "queue page": lambda: f"/triage?page={random.randrange(100)}",
        "queue, filtered": lambda: "/triage?tag=low_quality&checkpoint=stage1/step-0003000&undecided=1",
        "funnel": lambda: "/data/funnel",
        "histograms": lambda: "/data/histograms",
        "rejected gallery": lambda: f"/data/rejected?reason={random.choice(reasons)}&page={random.randrange(20)}",
        "sample page": lambda: f"/data/sample/{random.choice(pool_ids)}",
        "categories": lambda: "/data/categories",
        "embedding map": lambda: "/data/embedding",
        "bad cases over time": lambda: "/data/badcases",
        "training loss": lambda: "/data/training",
        "evaluations": lambda: "/data/evaluations",
        "case thumbnail (cached)": lambda: f"/img/case/{image}/thumb",
    }
    results = {}
    for name, url in kinds.items():
        for _ in range(5):  # warm: first embedding projection, thumbnail, memo lists
            client.get(url())
        times = []
        for _ in range(a.requests):
            u = url()
            t = time.perf_counter()
            resp = client.get(u)
            times.append((time.perf_counter() - t) * 1000)
            assert resp.status_code == 200, (u, resp.status_code, resp.text[:200])
        arr = np.asarray(times)
        results[name] = {
            "p50_ms": round(float(np.percentile(arr, 50)), 1),
            "p95_ms": round(float(np.percentile(arr, 95)), 1),
            "max_ms": round(float(arr.max()), 1),
        }
        print(f"{name:28s} p50 {results[name]['p50_ms']:7.1f} ms   p95 {results[name]['p95_ms']:7.1f} ms", flush=True)
    server.should_exit = True
    thread.join(timeout=10)
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    out = {
        "pool_rows": a.pool,
        "cases": a.cases,
        "requests": a.requests,
        "cold_cache_s": round(cold, 1),
        "built_s": built,
        "machine": machine,
        "results": results,
    }
    if a.json:
        a.json.write_text(json.dumps(out, indent=1))
    if a.workspace is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
