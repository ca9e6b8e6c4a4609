"""Bulk kNN, clustering and near-duplicate removal with faiss, for work over whole tables at once.

LanceDB answers one query at a time with metadata filters; faiss answers thousands of queries in one BLAS
call, which is what coverage clustering and the dedup of expansion candidates need. Vectors are expected
L2-normalised, so inner product is cosine similarity.
"""

from __future__ import annotations

import faiss
import numpy as np


def _f32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"expected a 2-D array of vectors, got shape {x.shape}")
    return x


def exact_knn(base: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k by inner product: (similarities [Q, k], indices [Q, k]); -1 where base has fewer than k."""
    base, queries = _f32(base), _f32(queries)
    index = faiss.IndexFlatIP(base.shape[1])
    index.add(base)
    return index.search(queries, min(k, max(1, base.shape[0])))


def kmeans(
    vectors: np.ndarray, n_clusters: int, *, seed: int = 0, iterations: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """Spherical k-means: (centroids [C, dim], assignment [N]). Used to measure how the pool covers concepts."""
    vectors = _f32(vectors)
    n_clusters = max(1, min(n_clusters, vectors.shape[0]))
    km = faiss.Kmeans(vectors.shape[1], n_clusters, niter=iterations, seed=seed, spherical=True, verbose=False)
    km.train(vectors)
    _, assign = km.index.search(vectors, 1)
    return km.centroids, assign.reshape(-1)


def greedy_dedup(vectors: np.ndarray, threshold: float, *, against: np.ndarray | None = None) -> np.ndarray:
    """Indices of rows to keep: a row is dropped when it is within cosine `threshold` of a kept row (in input
    order) or of any row of `against` (e.g. the curated set). Input order is the priority order."""
    vectors = _f32(vectors)
    keep = np.ones(vectors.shape[0], dtype=bool)
    if against is not None and len(against):
        sims, _ = exact_knn(_f32(against), vectors, 1)
        keep &= sims[:, 0] < threshold
    if vectors.shape[0] > 1:
        sims, idx = exact_knn(vectors, vectors, min(vectors.shape[0], 32))
        for i in range(vectors.shape[0]):
            if not keep[i]:
                continue
            for s, j in zip(sims[i], idx[i], strict=True):
                if j > i and s >= threshold:
                    keep[j] = False
    return np.flatnonzero(keep)
