"""Retrieval latency and recall of the LanceDB engine on random-but-clustered vectors.

    python3 bench/retrieval_latency.py --n 100000 --partitions 316 --nprobes 32 --refine-factor 10   # ~4 min
    python3 bench/retrieval_latency.py --n 1000000 --partitions 256 --nprobes 16 --refine-factor 50 \
        --sweep 32:50,32:100                                  # ~4 min on 2 cores, 3.6 GB peak; run alone
    python3 bench/retrieval_latency.py --n 3000 --queries 20 --partitions 16 --sub-vectors 16   # smoke run

Vectors: `clusters` Gaussian centres in `dim` dimensions, each vector = centre + noise, L2-normalised (what
pooled image/text embeddings look like: many tight-ish concept clusters). Queries are held-out vectors drawn
the same way. Recall@10 is against exact cosine search (faiss IndexFlatIP) over the same table. Build time is
table write + IVF_PQ training; peak memory is the process's max RSS (includes the generated vectors).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.retrieval.config import AnnConfig
from flywheel.retrieval.engine import RetrievalEngine, vectors_to_arrow
from flywheel.retrieval.knn import exact_knn
from flywheel.retrieval.space import EmbeddingSpace


def clustered(n: int, dim: int, clusters: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        x = centres[rng.integers(0, clusters, m)] + rng.normal(0, 0.6, (m, dim)).astype(np.float32) / np.sqrt(dim)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--clusters", type=int, default=1000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--nprobes", type=int, default=16)
    ap.add_argument("--refine-factor", type=int, default=50)
    ap.add_argument("--index-type", default="IVF_PQ")
    ap.add_argument("--sub-vectors", type=int, default=48)
    ap.add_argument("--partitions", type=int, default=None, help="IVF partitions (default min(256, sqrt(n)))")
    ap.add_argument(
        "--sweep", default="", help="extra NPROBES:REFINE settings measured on the same index, e.g. 32:50,64:100"
    )
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(args.clusters, args.dim)).astype(np.float32) / np.sqrt(args.dim)
    base = clustered(args.n, args.dim, args.clusters, rng, centres)
    queries = clustered(args.queries, args.dim, args.clusters, rng, centres)
    root = Path(tempfile.mkdtemp(prefix="fw-bench-"))
    ann = AnnConfig(
        min_rows=256,
        index_type=args.index_type,
        nprobes=args.nprobes,
        refine_factor=args.refine_factor,
        num_sub_vectors=args.sub_vectors,
        num_partitions=args.partitions or max(16, min(256, int(args.n**0.5))),
    )
    engine = RetrievalEngine(root, ann)
    space = EmbeddingSpace("bench-clustered", args.dim, True)
    t0 = time.perf_counter()
    for start in range(0, args.n, 200_000):
        chunk = base[start : start + 200_000]
        engine.add(
            "caption",
            space,
            pa.table(
                {
                    "id": [f"v{i}" for i in range(start, start + len(chunk))],
                    "vector": vectors_to_arrow(chunk),
                    "curated": np.arange(start, start + len(chunk)) % 2 == 0,
                }
            ),
        )
    write_s = time.perf_counter() - t0
    name = engine.find("caption").name
    t1 = time.perf_counter()
    engine.build_ann_if_large(name, force=True)
    build_s = time.perf_counter() - t1
    _sims, exact = exact_knn(base, queries, 10)
    truth = [{f"v{i}" for i in row} for row in exact]
    result = {
        "n": args.n,
        "dim": args.dim,
        "clusters": args.clusters,
        "queries": args.queries,
        "index_type": args.index_type,
        "num_partitions": ann.num_partitions,
        "num_sub_vectors": args.sub_vectors,
        "write_s": round(write_s, 1),
        "index_build_s": round(build_s, 1),
        "settings": [],
    }
    settings = [(args.nprobes, args.refine_factor)] + [
        tuple(int(x) for x in p.split(":")) for p in args.sweep.split(",") if p
    ]
    for nprobes, refine in settings:
        engine.ann.nprobes, engine.ann.refine_factor = nprobes, refine
        for q in queries[:5]:  # warm the index cache
            engine.search(name, q, k=10, columns=["id"])
        lat, recall = [], []
        for q, want in zip(queries, truth, strict=True):
            t = time.perf_counter()
            got = engine.search(name, q, k=10, columns=["id"])
            lat.append((time.perf_counter() - t) * 1000)
            recall.append(len(want & set(got.column("id").to_pylist())) / 10)
        lat_f = []
        for q in queries[:50]:
            t = time.perf_counter()
            engine.search(name, q, k=10, where="curated = true", columns=["id"])
            lat_f.append((time.perf_counter() - t) * 1000)
        result["settings"].append(
            {
                "nprobes": nprobes,
                "refine_factor": refine,
                "p50_ms": round(float(np.percentile(lat, 50)), 2),
                "p99_ms": round(float(np.percentile(lat, 99)), 2),
                "p50_ms_filtered": round(float(np.percentile(lat_f, 50)), 2),
                "recall_at_10": round(float(np.mean(recall)), 4),
            }
        )
        print(json.dumps(result["settings"][-1]), flush=True)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    result["index_bytes_mb"] = round(sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20)
    print(json.dumps(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
