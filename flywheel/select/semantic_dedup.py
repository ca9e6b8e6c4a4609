"""Semantic near-duplicate groups over image embeddings (SemDeDup): k-means, then exact cosine per cluster.

Why clusters: all pairs of 1M embeddings is 5e11 dot products; with k clusters of about n/k rows the
within-cluster work is n^2/k and the k-means assignment n*k, so k = sqrt(n) balances the two (1000 clusters of
about 1000 rows at 1M). k-means is faiss's, spherical (the embeddings are L2-unit, cosine = dot product), with
a fixed seed so a selection is reproducible.

Why guests: a duplicate pair split by a cluster boundary would be missed. For unit vectors with
1 - cos(x, y) <= eps, |x - y| <= r = sqrt(2 eps); if y's nearest centroid is c2 and x's is c1, the triangle
inequality gives |x - c2| <= |x - c1| + 2r. So every row also visits, as a guest, each of its `probes` nearest
centroids within that margin of its own, and home rows are compared with the home and guest rows of their
cluster. Within the probed centroids no pair under eps is missed; `probes` bounds the cost (the margin is
wide in 1280 dimensions) and the count of rows that had more qualifying clusters than probes is reported.

Pairs under eps are merged with the repo's union-find (flywheel.select.dedup_groups.groups_from_edges), so a
group is a connected component: the engine then keeps its best member by the recipe's ordering.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flywheel.errors import UserError
from flywheel.select.dedup_groups import groups_from_edges
from flywheel.store import fs as storage

KMEANS_SEED = 1234
KMEANS_ITERS = 20
# faiss trains on at most this many points per centroid (a seeded sample): k-means cost stays linear in k.
KMEANS_POINTS_PER_CENTROID = 64
PROBES = 3  # nearest centroids a row may visit (its home and up to two guest clusters)
READ_BATCH = 8192  # rows per Parquet record batch read (40 MiB of 1280-d float32)
CHUNK_ELEMENTS = 1 << 23  # similarity block: 8M float32 = 32 MiB whatever the cluster size


@dataclass(frozen=True)
class SemanticStats:
    """What one semantic dedup pass did, for the funnel note and the bench."""

    embeddings: int
    clusters: int
    probes: int
    guest_visits: int
    probe_limited: int  # rows whose last probed centroid was still inside the exactness margin
    pairs: int
    seconds_clustering: float  # k-means training and the nearest-centroid search
    seconds_pairs: float  # cosine blocks within clusters and union-find

    def note(self) -> str:
        limited = f", {self.probe_limited} rows at the {self.probes}-cluster limit" if self.probe_limited else ""
        return (
            f"{self.clusters} k-means clusters over {self.embeddings} embeddings, {self.guest_visits} guest visits "
            f"(up to {self.probes} clusters a row), "
            f"{self.pairs} pairs under eps{limited}"
        )


def cluster_count(rows: int, clusters: int | None = None) -> int:
    """The rule's `clusters`, else ceil(sqrt(rows)); never more than the rows."""
    k = clusters if clusters is not None else math.ceil(math.sqrt(max(rows, 1)))
    return max(1, min(k, rows))


def read_embeddings(files: Sequence[Path | str], key: str, column: str, keys: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """(keys, float32 (n, d) matrix) of the rows in `keys` whose `column` is not null, batch by batch.

    Only the key and the embedding column are read (Parquet projection: never image bytes), in record batches
    copied straight into the preallocated matrix, so the peak is the matrix plus about one shard's batches (Arrow's
    pool is told to give them back after each shard).
    """
    out: np.ndarray | None = None
    ids: list[pa.Array] = []
    filled = 0
    for path in files:
        for batch in storage.parquet_file(path).iter_batches(batch_size=READ_BATCH, columns=[key, column]):
            col = batch.column(column)
            mask = pc.and_(pc.is_in(batch.column(key), value_set=keys), pc.is_valid(col))
            batch = batch.filter(mask)
            if not batch.num_rows:
                continue
            flat = batch.column(column).flatten().to_numpy(zero_copy_only=False)
            dim = flat.size // batch.num_rows
            if dim * batch.num_rows != flat.size:
                raise UserError(f"{column} in {Path(path).name} has embeddings of different lengths")
            if out is None:
                out = np.empty((len(keys), dim), dtype=np.float32)
            elif out.shape[1] != dim:
                raise UserError(f"{column} in {Path(path).name} is {dim}-d, other shards {out.shape[1]}-d")
            out[filled : filled + batch.num_rows] = flat.reshape(batch.num_rows, dim)
            filled += batch.num_rows
            ids.append(batch.column(key))
        pa.default_memory_pool().release_unused()  # the allocator keeps freed batches otherwise
    if out is None:
        return pa.array([], pa.string()), np.zeros((0, 0), dtype=np.float32)
    return pa.concat_arrays(ids), out[:filled]


def assign_clusters(
    x: np.ndarray, k: int, eps: float, seed: int = KMEANS_SEED, probes: int = PROBES
) -> tuple[list[np.ndarray], int, int]:
    """Per cluster, the row indices that visit it (home rows first); plus guest visits and probe-limited rows.

    Returns (members, guest_visits, probe_limited) where `members[c]` is (indices, is_home) stacked as a
    (2, m) array: row index and 1 for home rows, 0 for guests.
    """
    import faiss

    n, d = x.shape
    if k <= 1:
        return [np.stack([np.arange(n), np.ones(n, dtype=np.int64)])], 0, 0
    km = faiss.Kmeans(
        d,
        k,
        niter=KMEANS_ITERS,
        seed=seed,
        spherical=True,
        max_points_per_centroid=KMEANS_POINTS_PER_CENTROID,
        min_points_per_centroid=1,
        verbose=False,
    )
    km.train(x)
    probes = max(1, min(probes, k))
    dist2, nearest = km.index.search(x, probes)  # squared L2 to the nearest centroids, ascending
    dist = np.sqrt(np.maximum(dist2, 0.0))
    margin = 2.0 * math.sqrt(2.0 * eps)
    visits = dist <= dist[:, :1] + margin
    visits[:, 0] = True
    probe_limited = int(visits[:, -1].sum()) if probes < k else 0
    rows = np.broadcast_to(np.arange(n)[:, None], nearest.shape)
    home = np.zeros(nearest.shape, dtype=np.int64)
    home[:, 0] = 1
    cl, rw, hm = nearest[visits], rows[visits], home[visits]
    order = np.lexsort((rw, -hm, cl))  # by cluster, home rows first, then row index
    cl, rw, hm = cl[order], rw[order], hm[order]
    bounds = np.searchsorted(cl, np.arange(k + 1))
    members = [np.stack([rw[bounds[c] : bounds[c + 1]], hm[bounds[c] : bounds[c + 1]]]) for c in range(k)]
    return members, int(len(rw) - n), probe_limited


def cluster_pairs(x: np.ndarray, members: np.ndarray, eps: float) -> np.ndarray:
    """(m, 2) row-index pairs (i < j) of one cluster with 1 - cos <= eps, in blocks of CHUNK_ELEMENTS."""
    idx, is_home = members[0], members[1].astype(bool)
    home = idx[is_home]
    if not len(home) or len(idx) < 2:
        return np.zeros((0, 2), dtype=np.int64)
    cand = x[idx]
    threshold = np.float32(1.0 - eps)
    block = max(1, CHUNK_ELEMENTS // len(idx))
    found: list[np.ndarray] = []
    for start in range(0, len(home), block):
        rows = home[start : start + block]
        sims = x[rows] @ cand.T
        # home-home pairs once (row index below column index); home-guest pairs always (a guest is never a row)
        hit = (sims >= threshold) & ((idx[None, :] > rows[:, None]) | ~is_home[None, :])
        r, c = np.nonzero(hit)
        if len(r):
            a, b = rows[r], idx[c]
            found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), dtype=np.int64)


def semantic_groups(
    x: np.ndarray, eps: float, clusters: int | None = None, seed: int = KMEANS_SEED, probes: int = PROBES
) -> tuple[dict[int, int], SemanticStats]:
    """Map each row index that has a duplicate to its group's representative index (union-find).

    `probes` (nearest centroids a row may visit) is fixed for the rule; the bench varies it to measure what
    the guest visits buy.
    """
    n = len(x)
    k = cluster_count(n, clusters)
    started = time.perf_counter()
    members, guests, limited = assign_clusters(x, k, eps, seed, probes) if n else ([], 0, 0)
    clustered = time.perf_counter()
    parts = [cluster_pairs(x, m, eps) for m in members]
    pairs = np.unique(np.concatenate(parts), axis=0) if parts else np.zeros((0, 2), dtype=np.int64)
    groups = groups_from_edges([(int(a), int(b)) for a, b in pairs])
    stats = SemanticStats(
        embeddings=n,
        clusters=k,
        probes=probes,
        guest_visits=guests,
        probe_limited=limited,
        pairs=len(pairs),
        seconds_clustering=round(clustered - started, 3),
        seconds_pairs=round(time.perf_counter() - clustered, 3),
    )
    return groups, stats
