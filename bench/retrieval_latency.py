"""Retrieval latency and recall at N vectors: LanceDB's IVF_PQ path and the faiss serving path, side by side.

    nice -n 10 python3 bench/retrieval_latency.py                          # 1M x 384-d, both datasets, ~15 min
    python3 bench/retrieval_latency.py --vectors 20000 --queries 50        # smoke run, ~1 min
    python3 bench/retrieval_latency.py --vectors 1000000 --data mixture --seed 1 --paths faiss \
        --nprobe-sweep 4,8,16,32,64                                        # the nprobe tuning run

One run writes one LanceDB table of N vectors per dataset, computes exact top-10 (faiss IndexFlatIP), then
measures each path in its own child process, so each path's build seconds and memory are its own (the
generated vectors and the exact search stay in the parent). Memory: peak RSS of the child (build and queries)
and its RSS after the queries (the index as served: LanceDB caches, the faiss pages the queries touched):

- `lance`: `ann.serving: lance`, the LanceDB IVF_PQ index (partitions, sub-vectors, nprobes, refine_factor).
- `faiss`: `ann.serving: faiss` (the default), the faiss IVF copy beside the LanceDB index. It runs after the
  `lance` child and reuses its IVF_PQ index (the faiss path keeps it for selective filters); its build
  seconds are the faiss copy only, so a `flywheel index` from scratch costs the two build columns added up.
  Run alone (`--paths faiss`, for tuning) it builds no IVF_PQ index, and filters that fall back to LanceDB
  are flat scans.

Each query is one `RetrievalEngine.search` call, top-10, one at a time, after 5 warm-up queries:
`ids` (columns=["id"]), `meta` (id, uri, caption, curated: what `flywheel search` prints; the faiss path then
fetches the hits from LanceDB by id), and `filtered` (where "curated = true", half the rows; recall against
exact search over the curated half).

Datasets (vectors L2-normalised, queries held out and drawn the same way):
- `clustered`: 1000 Gaussian centres, noise sigma 0.6/sqrt(d): the earlier bench (docs/flywheel-loop.md);
  tight clusters, so neighbours sit in one IVF cell and recall is easy.
- `mixture`: a harder stand-in for pooled image/text embeddings: a shared mean direction (real embeddings
  are anisotropic), 200 topics x 10 sub-concepts, Zipf cluster sizes, a noise scale per sub-concept drawn from
  [0.5, 1.5]; neighbours straddle IVF cells, so nprobe matters.
`--seed` changes centres, topics and sizes: tune on one seed, report on another.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flywheel.retrieval.config import AnnConfig, FaissConfig
from flywheel.retrieval.engine import RetrievalEngine, vectors_to_arrow
from flywheel.retrieval.knn import exact_knn
from flywheel.retrieval.space import EmbeddingSpace

DATASETS = ("clustered", "mixture")
PATHS = ("lance", "faiss")
META_COLUMNS = ["id", "uri", "caption", "curated"]
CHUNK = 100_000


def clustered(n: int, dim: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, CHUNK):
        m = min(CHUNK, n - start)
        x = centres[rng.integers(0, len(centres), m)] + rng.normal(0, 0.6, (m, dim)).astype(np.float32) / np.sqrt(dim)
        out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


@dataclass
class Mixture:
    """Topic > sub-concept hierarchy around a shared mean; `weights` are Zipf cluster sizes."""

    mean: np.ndarray
    centres: np.ndarray  # [topics * subs, dim]
    sigma: np.ndarray  # per sub-concept noise scale
    weights: np.ndarray

    @classmethod
    def make(cls, dim: int, rng: np.random.Generator, topics: int = 200, subs: int = 10) -> Mixture:
        mean = rng.normal(size=dim).astype(np.float32)
        mean *= 0.8 / np.linalg.norm(mean)
        topic = rng.normal(size=(topics, dim)).astype(np.float32) / np.sqrt(dim)
        sub = topic.repeat(subs, axis=0) + 0.5 * rng.normal(size=(topics * subs, dim)).astype(np.float32) / np.sqrt(dim)
        sigma = rng.uniform(0.5, 1.5, topics * subs).astype(np.float32)
        weights = 1.0 / np.arange(1, topics * subs + 1) ** 0.8
        rng.shuffle(weights)
        return cls(mean, sub + mean, sigma, weights / weights.sum())

    def draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        dim = self.centres.shape[1]
        out = np.empty((n, dim), dtype=np.float32)
        for start in range(0, n, CHUNK):
            m = min(CHUNK, n - start)
            c = rng.choice(len(self.centres), m, p=self.weights)
            noise = rng.normal(size=(m, dim)).astype(np.float32) * (self.sigma[c, None] / np.sqrt(dim))
            x = self.centres[c] + noise
            out[start : start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
        return out


def make_data(kind: str, n: int, queries: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    if kind == "clustered":
        centres = rng.normal(size=(1000, dim)).astype(np.float32) / np.sqrt(dim)
        return clustered(n, dim, rng, centres), clustered(queries, dim, rng, centres)
    mix = Mixture.make(dim, rng)
    return mix.draw(n, rng), mix.draw(queries, rng)


def write_table(root: Path, base: np.ndarray) -> tuple[str, float]:
    """The bench table: id, vector, and the metadata `flywheel search` shows (uri, caption, curated)."""
    engine = RetrievalEngine(root, AnnConfig(serving="lance"))
    space = EmbeddingSpace("bench", base.shape[1], True)
    t0 = time.perf_counter()
    for start in range(0, len(base), 200_000):
        chunk = base[start : start + 200_000]
        idx = np.arange(start, start + len(chunk))
        engine.add(
            "caption",
            space,
            pa.table(
                {
                    "id": [f"v{i}" for i in idx],
                    "vector": vectors_to_arrow(chunk),
                    "uri": [f"s3://pool/images/{i:08d}.jpg" for i in idx],
                    "caption": [f"a photo of concept {i % 977} number {i}" for i in idx],
                    "curated": idx % 2 == 0,
                }
            ),
        )
    return engine.find("caption").name, time.perf_counter() - t0


def rss_mb(key: str) -> int:
    """VmHWM (peak) or VmRSS (now) of this process, in MB. Not getrusage: Linux carries the parent's peak into a
    fork+exec child's ru_maxrss, which would charge each path with the parent's generated vectors."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return round(int(line.split()[1]) / 1024)
    raise RuntimeError(f"no {key} in /proc/self/status (Linux only)")


def _ms(values: list[float]) -> dict[str, float]:
    return {"p50_ms": round(float(np.percentile(values, 50)), 2), "p99_ms": round(float(np.percentile(values, 99)), 2)}


def measure(engine: RetrievalEngine, name: str, queries: np.ndarray, truth: np.ndarray, truth_f: np.ndarray) -> dict:
    """Latency of single top-10 queries (ids only, with metadata, filtered) and recall@10 against exact."""
    for q in queries[:5]:
        engine.search(name, q, k=10, columns=["id"])
    out: dict[str, float] = {}
    for label, columns, where, want in (
        ("ids", ["id"], None, truth),
        ("meta", META_COLUMNS, None, truth),
        ("filtered", ["id"], "curated = true", truth_f),
    ):
        lat, recall = [], []
        for q, w in zip(queries, want, strict=True):
            t = time.perf_counter()
            got = engine.search(name, q, k=10, where=where, columns=columns)
            lat.append((time.perf_counter() - t) * 1000)
            recall.append(len({f"v{i}" for i in w} & set(got.column("id").to_pylist())) / 10)
        ms = _ms(lat)
        out[f"{label}_p50_ms"], out[f"{label}_p99_ms"] = ms["p50_ms"], ms["p99_ms"]
        out[f"{label}_recall_at_10"] = round(float(np.mean(recall)), 4)
    return out


@dataclass
class ChildArgs:
    path: str
    root: str
    name: str
    rows: int
    partitions: int
    sub_vectors: int
    nprobes: int
    refine_factor: int
    nprobe: int
    nlist: int | None
    faiss_type: str
    faiss_mmap: bool
    sweep: list[int]  # faiss: nprobe values; lance: nprobes values (refine as given)


def child(spec: ChildArgs) -> dict:
    """Build one path's index over the shared table and measure it; runs in its own process."""
    root = Path(spec.root)
    ann = AnnConfig(
        min_rows=256,
        num_partitions=spec.partitions,
        num_sub_vectors=spec.sub_vectors,
        nprobes=spec.nprobes,
        refine_factor=spec.refine_factor,
        serving=spec.path,
        faiss=FaissConfig(index_type=spec.faiss_type, nlist=spec.nlist, nprobe=spec.nprobe, mmap=spec.faiss_mmap),
    )
    engine = RetrievalEngine(root, ann)
    queries = np.load(root / "queries.npy")
    truth, truth_f = np.load(root / "truth.npy"), np.load(root / "truth_curated.npy")
    result: dict = {"path": spec.path}
    t0 = time.perf_counter()
    if spec.path == "lance":
        engine.build_ann_if_large(spec.name, force=True)  # serving lance: the IVF_PQ index alone
        result["lance_build_s"] = round(time.perf_counter() - t0, 1)
    if spec.path == "faiss":
        t1 = time.perf_counter()
        manifest = engine.build_serving(spec.name)
        result["faiss_build_s"] = round(time.perf_counter() - t1, 1)
        result["nlist"] = manifest["nlist"]
        result["faiss_type"] = spec.faiss_type
        result["faiss_load"] = "mmap" if spec.faiss_mmap else "ram"
        result["nprobe"] = spec.nprobe
        assert engine.served(spec.name) is not None
    else:
        result.update(partitions=spec.partitions, nprobes=spec.nprobes, refine_factor=spec.refine_factor)
    result["build_peak_rss_mb"] = rss_mb("VmHWM")
    result.update(measure(engine, spec.name, queries, truth, truth_f))
    result["serving_rss_mb"] = rss_mb("VmRSS")  # after the queries: the index as searched, build memory freed
    result["peak_rss_mb"] = rss_mb("VmHWM")
    sweep = []
    for value in spec.sweep:
        if spec.path == "faiss":
            engine.ann.faiss.nprobe = value
        else:
            engine.ann.nprobes = value
        sweep.append(
            {
                "nprobe" if spec.path == "faiss" else "nprobes": value,
                **measure(engine, spec.name, queries, truth, truth_f),
            }
        )
        print(json.dumps(sweep[-1]), file=sys.stderr, flush=True)
    result["sweep"] = sweep
    return result


def run_dataset(args: argparse.Namespace, kind: str) -> dict:
    base, queries = make_data(kind, args.vectors, args.queries, args.dim, args.seed)
    root = Path(tempfile.mkdtemp(prefix="fw-bench-", dir=args.tmp))
    try:
        name, write_s = write_table(root, base)
        _s, truth = exact_knn(base, queries, 10)
        _s, truth_half = exact_knn(base[::2], queries, 10)  # curated = even ids
        np.save(root / "queries.npy", queries)
        np.save(root / "truth.npy", truth)
        np.save(root / "truth_curated.npy", truth_half * 2)
        del base
        out: dict = {
            "data": kind,
            "vectors": args.vectors,
            "dim": args.dim,
            "seed": args.seed,
            "write_s": round(write_s, 1),
        }
        partitions = args.partitions or max(16, min(256, int(args.vectors**0.5)))
        for path in args.paths:
            spec = ChildArgs(
                path=path,
                root=str(root),
                name=name,
                rows=args.vectors,
                partitions=partitions,
                sub_vectors=args.sub_vectors,
                nprobes=args.nprobes,
                refine_factor=args.refine_factor,
                nprobe=args.nprobe,
                nlist=args.nlist,
                faiss_type=args.faiss_type,
                faiss_mmap=args.faiss_load == "mmap",
                sweep=args.nprobe_sweep if path == "faiss" else args.nprobes_sweep,
            )
            proc = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(asdict(spec))],
                stdout=subprocess.PIPE,
                text=True,
                check=True,
            )
            res = json.loads(proc.stdout.strip().splitlines()[-1])
            out[path] = res
            print(json.dumps({"data": kind, **res}), flush=True)
        out["index_bytes_mb"] = round(sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 2**20)
        return out
    finally:
        shutil.rmtree(root, ignore_errors=True)


def table(results: list[dict]) -> str:
    rows = [
        "| data | path | build (s) | ids p50 / p99 (ms) | meta p50 / p99 (ms) | recall@10 "
        "| filtered p50 / p99 (ms) | filtered recall@10 | peak RSS (MB) | RSS serving (MB) |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for path in PATHS:
            if path not in r:
                continue
            x = r[path]
            build = x.get("faiss_build_s", x.get("lance_build_s"))
            label = (
                f"faiss {x['faiss_type']} nlist {x['nlist']} nprobe {x['nprobe']} ({x['faiss_load']})"
                if path == "faiss"
                else f"lance IVF_PQ {x['partitions']} part. nprobes {x['nprobes']} refine {x['refine_factor']}"
            )
            rows.append(
                f"| {r['data']} | {label} | {build} | {x['ids_p50_ms']} / {x['ids_p99_ms']} "
                f"| {x['meta_p50_ms']} / {x['meta_p99_ms']} | {x['ids_recall_at_10']} "
                f"| {x['filtered_p50_ms']} / {x['filtered_p99_ms']} | {x['filtered_recall_at_10']} "
                f"| {x['peak_rss_mb']} | {x['serving_rss_mb']} |"
            )
    return "\n".join(rows)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", "--n", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384, help="384: the MiniLM caption table, what text queries search")
    ap.add_argument("--data", default=",".join(DATASETS), help=f"comma list of {DATASETS}")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma list of {PATHS}")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--partitions", type=int, default=None, help="lance IVF partitions (default min(256, sqrt(n)))")
    ap.add_argument("--sub-vectors", type=int, default=48)
    ap.add_argument("--nprobes", type=int, default=AnnConfig.nprobes)
    ap.add_argument("--refine-factor", type=int, default=AnnConfig.refine_factor)
    ap.add_argument("--nprobes-sweep", type=_ints, default=[], help="extra lance nprobes on the same index")
    ap.add_argument("--faiss-type", default=FaissConfig.index_type)
    ap.add_argument("--faiss-load", choices=("mmap", "ram"), default="mmap" if FaissConfig.mmap else "ram")
    ap.add_argument("--nlist", type=int, default=None, help="faiss lists (default sqrt(n), 16..4096)")
    ap.add_argument("--nprobe", type=int, default=FaissConfig.nprobe)
    ap.add_argument("--nprobe-sweep", type=_ints, default=[], help="extra faiss nprobe values on the same index")
    ap.add_argument("--tmp", default=None, help="where the bench table is written (default: the system temp dir)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(ChildArgs(**json.loads(args.child)))), flush=True)
        return
    args.paths = [p for p in PATHS if p in args.paths.split(",")]  # lance first: the faiss child reuses its index
    results = [run_dataset(args, kind) for kind in args.data.split(",")]
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
