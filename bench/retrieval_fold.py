"""Folding written rows into the faiss serving copy against a full rebuild: seconds and recall@10.

    nice -n 10 python3 bench/retrieval_fold.py --vectors 1000000 --fractions 0.01,0.1  # docs/retrieval.md, 5 min
    python3 bench/retrieval_fold.py --vectors 20000 --queries 50                         # smoke run, seconds

For each fraction f, in a fresh index: write N rows of the `mixture` data (bench/retrieval_latency.py), build
the copy (`build_ann_if_large`: the LanceDB index, then the full faiss build, timed), then write f x N rows
through `RetrievalEngine.add` (nine in ten new ids, one in ten re-added ids of existing rows with new
vectors, so the fold also removes old vectors) and publish the copy with `ensure_serving`, which folds them
(timed). Recall@10 of the folded copy (at the default nprobe) is measured against exact search over the
table's rows now; then `build_serving` rebuilds the copy from scratch (retrained lists, timed) and the same
queries are measured again. The LanceDB index is an IVF_FLAT of 16 partitions: the faiss copy does not
depend on it, and an IVF_PQ build would only add minutes.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine
from bench.retrieval_latency import Mixture
from flywheel.retrieval.config import AnnConfig, FaissConfig
from flywheel.retrieval.engine import RetrievalEngine, vectors_to_arrow
from flywheel.retrieval.knn import exact_knn
from flywheel.retrieval.serving import MANIFEST, serving_dir
from flywheel.retrieval.space import EmbeddingSpace

WRITE_CHUNK = 100_000
REPLACED_SHARE = 10  # one written row in ten re-adds an existing id


def _rows(ids: np.ndarray, vectors: np.ndarray) -> pa.Table:
    return pa.table(
        {
            "id": [f"v{i}" for i in ids],
            "vector": vectors_to_arrow(vectors),
            "caption": [f"a photo of concept {i % 977} number {i}" for i in ids],
        }
    )


def _write(engine: RetrievalEngine, space: EmbeddingSpace, ids: np.ndarray, vectors: np.ndarray) -> float:
    t0 = time.perf_counter()
    for start in range(0, len(ids), WRITE_CHUNK):
        engine.add("caption", space, _rows(ids[start : start + WRITE_CHUNK], vectors[start : start + WRITE_CHUNK]))
    return time.perf_counter() - t0


def _recall(engine: RetrievalEngine, name: str, queries: np.ndarray, truth: list[set[str]]) -> float:
    hits = [set(engine.search(name, q, k=10, columns=["id"]).column("id").to_pylist()) for q in queries]
    return round(float(np.mean([len(h & t) / 10 for h, t in zip(hits, truth, strict=True)])), 4)


def run(args: argparse.Namespace, fraction: float, tmp: Path) -> dict:
    rng = np.random.default_rng(args.seed)
    mix = Mixture.make(args.dim, rng)
    n, written = args.vectors, round(fraction * args.vectors)
    base = mix.draw(n, rng)
    replaced = rng.choice(n, written // REPLACED_SHARE, replace=False)
    new_ids = np.concatenate([replaced, np.arange(n, n + written - len(replaced))])
    new_vectors = mix.draw(written, rng)
    queries = mix.draw(args.queries, rng)

    root = tmp / f"fold-{fraction}"
    ann = AnnConfig(min_rows=256, index_type="IVF_FLAT", num_partitions=16, faiss=FaissConfig())
    engine = RetrievalEngine(root, ann)
    space = EmbeddingSpace("bench", args.dim, True)
    write_base_s = _write(engine, space, np.arange(n), base)
    name = engine.find("caption").name
    t0 = time.perf_counter()
    engine.build_ann_if_large(name)
    first_build_s = time.perf_counter() - t0  # the LanceDB IVF_FLAT and the full faiss build
    manifest = json.loads((serving_dir(root, name) / MANIFEST).read_text())

    write_s = _write(engine, space, new_ids, new_vectors)
    t0 = time.perf_counter()
    assert engine.ensure_serving(name)
    fold_s = time.perf_counter() - t0
    folded = json.loads((serving_dir(root, name) / MANIFEST).read_text())
    assert folded["folds"] == 1, "a fraction past ann.faiss.retrain_after rebuilds instead of folding"

    current = np.concatenate([base, new_vectors[len(replaced) :]])
    current[replaced] = new_vectors[: len(replaced)]
    labels = [f"v{i}" for i in range(len(current))]
    _sims, idx = exact_knn(current, queries, 10)
    truth = [{labels[i] for i in row} for row in idx]
    recall_folded = _recall(engine, name, queries, truth)

    t0 = time.perf_counter()
    engine.build_serving(name)
    rebuild_s = time.perf_counter() - t0
    rebuilt = json.loads((serving_dir(root, name) / MANIFEST).read_text())
    recall_rebuilt = _recall(engine, name, queries, truth)
    shutil.rmtree(root)
    return {
        "vectors": n,
        "fraction": fraction,
        "written": written,
        "re_added": len(replaced),
        "nlist": manifest["nlist"],
        "nlist_rebuilt": rebuilt["nlist"],
        "rows_after": folded["rows"],
        "write_base_s": round(write_base_s, 1),
        "first_build_s": round(first_build_s, 1),
        "write_s": round(write_s, 2),
        "fold_s": round(fold_s, 2),
        "rebuild_s": round(rebuild_s, 2),
        "recall_folded": recall_folded,
        "recall_rebuilt": recall_rebuilt,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--vectors", type=int, default=1_000_000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--fractions", default="0.01,0.1", help="comma list: rows written, as a share of --vectors")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", default=None, help="where the bench tables are written (default: the system temp dir)")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    started = machine()  # cores, GPU, load average at the start
    tmp = Path(tempfile.mkdtemp(prefix="retrieval-fold-", dir=args.tmp))
    results = []
    try:
        for fraction in (float(f) for f in args.fractions.split(",")):
            results.append(run(args, fraction, tmp))
            print(json.dumps(results[-1]), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {"machine": started, "load_average_end": os.getloadavg(), "results": results}
    print(json.dumps(report, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
