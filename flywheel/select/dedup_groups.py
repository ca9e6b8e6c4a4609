"""Near-duplicate groups over 64-bit hashes without all-pairs comparison.

Banding (the pigeonhole form of LSH): split each hash into `max_hamming + 1` bands. Two
hashes within Hamming distance `max_hamming` differ in at most that many bands, so they
agree exactly on at least one band. Candidate pairs therefore come from an equality join
on (band index, band value) in DuckDB; each candidate is verified with the exact distance,
and the surviving edges are merged into groups with union-find. For random hashes the
candidate rate per pair is about (T+1) * 2^-(64/(T+1)); at the default T=4 that is 6e-4.
"""

from __future__ import annotations

import duckdb


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


def groups_from_edges(edges: list[tuple[str, str]]) -> dict[str, str]:
    """Union-find: map every key that has an edge to a representative key of its group."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
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
