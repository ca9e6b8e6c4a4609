"""Near-duplicate groups over 64-bit hashes without all-pairs comparison.

Banding (the pigeonhole form of LSH): split each hash into `max_hamming + 1` bands. Two
hashes within Hamming distance `max_hamming` differ in at most that many bands, so they
agree exactly on at least one band. Candidate pairs therefore come from an equality join
on (band index, band value) in DuckDB; each candidate is verified with the exact distance,
and the surviving edges are merged into groups with union-find. For random hashes the
candidate rate per pair is about (T+1) * 2^-(64/(T+1)); at the default T=4 that is 6e-4.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

import duckdb
import numpy as np

# Multi-view LSH: tables of sampled bits. With k bits a table, two hashes at distance d agree on a table with
# probability (1 - d/64)^k; over L tables a pair at distance 8 is found with 1 - (1 - 0.875^20)^64 = 0.99
# (distance 9: 0.96), while a random pair collides in 64 * 2^-20 = 6e-5 of tables per view pair, about the
# candidate rate of the 5-band pigeonhole scheme at Hamming 4.
LSH_BITS = 20
LSH_TABLES = 64
LSH_SEED = 1234

K = TypeVar("K", str, int)  # row keys (perceptual: ids) or row indices (semantic dedup)


def band_slices(max_hamming: int, bits: int = 64) -> list[tuple[int, int]]:
    """(shift, width) of each band, widths as equal as possible."""
    n = max_hamming + 1
    if not 1 <= n <= bits:
        raise ValueError(f"max_hamming must be in [0, {bits - 1}]")
    widths = [bits // n + (1 if i < bits % n else 0) for i in range(n)]
    slices, shift = [], 0
    for w in widths:
        slices.append((shift, w))
        shift += w
    return slices


def near_duplicate_edges(
    con: duckdb.DuckDBPyConnection, table: str, key: str, hash_col: str, max_hamming: int
) -> list[tuple[str, str]]:
    """Pairs (a, b) of keys in `table` whose hashes differ in at most `max_hamming` bits."""
    unions = " UNION ALL ".join(
        f"SELECT {key} AS k, {hash_col} AS h, {i} AS band, "
        f"(({hash_col} >> {shift}) & {(1 << width) - 1}) AS v FROM {table} "
        f"WHERE {hash_col} IS NOT NULL"
        for i, (shift, width) in enumerate(band_slices(max_hamming))
    )
    sql = f"""
        WITH bands AS ({unions})
        SELECT DISTINCT a.k, b.k
        FROM bands a JOIN bands b ON a.band = b.band AND a.v = b.v AND a.k < b.k
        WHERE bit_count(xor(a.h, b.h)) <= {int(max_hamming)}
    """
    return [(a, b) for a, b in con.execute(sql).fetchall()]


def hamming64(a: int, b: int) -> int:
    """Bits that differ between two 64-bit perceptual hashes (stored signed, compared unsigned)."""
    return ((a ^ b) & 0xFFFFFFFFFFFFFFFF).bit_count()


def groups_from_edges(edges: list[tuple[K, K]]) -> dict[K, K]:
    """Union-find: map every key that has an edge to a representative key of its group."""
    parent: dict[K, K] = {}

    def find(x: K) -> K:
        parent.setdefault(x, x)
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {k: find(k) for k in parent}


def lsh_bit_positions(tables: int = LSH_TABLES, bits: int = LSH_BITS, seed: int = LSH_SEED) -> list[list[int]]:
    """Bit positions each LSH table samples (fixed seed: a selection is reproducible)."""
    rng = np.random.default_rng(seed)
    return [sorted(int(b) for b in rng.choice(64, size=bits, replace=False)) for _ in range(tables)]


def multiview_edges(
    con: duckdb.DuckDBPyConnection,
    table: str,
    key: str,
    hash_cols: Sequence[str],
    max_hamming: int,
    tables: int = LSH_TABLES,
    bits: int = LSH_BITS,
) -> list[tuple[str, str]]:
    """Pairs whose first-view hash is within `max_hamming` bits of any view hash of the other.

    `hash_cols[0]` is the full view, the rest are other views of the same image (centre crops). Candidates
    come from equality joins on sampled-bit keys (LSH), one row per (image, view, table), joined only where
    one side is the full view; each candidate is verified with the exact smallest distance over those view
    pairs. No all-pairs comparison: work grows with the number of colliding pairs.
    """
    cols = list(hash_cols)
    value_exprs = []
    for positions in lsh_bit_positions(tables, bits):
        terms = [f"(((h >> {p}) & 1) << {i})" for i, p in enumerate(positions)]
        value_exprs.append(" | ".join(terms))
    views = " UNION ALL ".join(
        f"SELECT {key} AS k, {v} AS view, {c} AS h FROM {table} WHERE {c} IS NOT NULL" for v, c in enumerate(cols)
    )
    keyed = " UNION ALL ".join(
        f"SELECT k, view, {t} AS t, {expr} AS v FROM views" for t, expr in enumerate(value_exprs)
    )
    pairs = ["bit_count(xor(a.h0, b.h0))"]
    for c in range(1, len(cols)):
        pairs += [f"bit_count(xor(a.h0, b.h{c}))", f"bit_count(xor(a.h{c}, b.h0))"]
    distance = f"least({', '.join(pairs)})" if len(pairs) > 1 else pairs[0]
    hashes = ", ".join(f"{c} AS h{i}" for i, c in enumerate(cols))
    sql = f"""
        WITH views AS ({views}), keyed AS ({keyed}),
        cand AS (
            SELECT DISTINCT least(a.k, b.k) AS ka, greatest(a.k, b.k) AS kb
            FROM keyed a JOIN keyed b ON a.t = b.t AND a.v = b.v AND a.k <> b.k AND (a.view = 0 OR b.view = 0)
        ),
        hs AS (SELECT {key} AS k, {hashes} FROM {table} WHERE {cols[0]} IS NOT NULL)
        SELECT cand.ka, cand.kb FROM cand
        JOIN hs a ON a.k = cand.ka JOIN hs b ON b.k = cand.kb
        WHERE {distance} <= {int(max_hamming)}
    """
    return [(a, b) for a, b in con.execute(sql).fetchall()]
