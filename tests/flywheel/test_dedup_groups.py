import duckdb
import numpy as np

from flywheel.select.dedup_groups import band_slices, groups_from_edges, near_duplicate_edges


def test_bands_cover_all_bits():
    for t in (0, 3, 4, 7):
        slices = band_slices(t)
        assert len(slices) == t + 1 and sum(w for _, w in slices) == 64


def test_banding_finds_exactly_the_pairs_brute_force_finds():
    rng = np.random.default_rng(0)
    base = rng.integers(-(2**63), 2**63 - 1, size=60, dtype=np.int64)
    hashes = list(base)
    for h in base[:30]:  # near copies: flip up to 5 random bits
        flips = rng.choice(64, size=int(rng.integers(0, 6)), replace=False)
        v = int(h)
        for f in flips:
            v ^= 1 << int(f)
        hashes.append(np.int64(v - (1 << 64) if v >= (1 << 63) else v))
    keys = [f"k{i:03d}" for i in range(len(hashes))]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (k VARCHAR, h BIGINT)")
    con.executemany("INSERT INTO t VALUES (?, ?)", [(k, int(h)) for k, h in zip(keys, hashes, strict=True)])
    for t in (2, 4):
        found = set(near_duplicate_edges(con, "t", "k", "h", t))
        truth = {
            (keys[i], keys[j])
            for i in range(len(keys))
            for j in range(i + 1, len(keys))
            if ((int(hashes[i]) ^ int(hashes[j])) & (2**64 - 1)).bit_count() <= t
        }
        assert found == truth


def test_union_find_merges_chains():
    groups = groups_from_edges([("a", "b"), ("b", "c"), ("x", "y")])
    assert groups["c"] == groups["a"] == "a" and groups["y"] == "x"


def _flip(h: int, positions: list[int]) -> int:
    for p in positions:
        h ^= 1 << p
    return h - (1 << 64) if h >= (1 << 63) else h


def test_multiview_edges_match_brute_force_on_full_and_crop_views():
    import pyarrow as pa

    from flywheel.select.dedup_groups import multiview_edges

    rng = np.random.default_rng(3)
    rows = []
    for i in range(60):  # distinct images: random hashes, far apart
        rows.append((f"o{i}", *(int(v) for v in rng.integers(-(2**63), 2**63 - 1, 3, dtype=np.int64))))
    truth = set()
    for i in range(0, 60, 3):  # copies whose full view is within 6 bits of the original's centre crop
        k, _full, c92, c84 = rows[i]
        target = (c92, c84)[i % 2]
        copy = _flip(target & 0xFFFFFFFFFFFFFFFF, [int(p) for p in rng.choice(64, 6, replace=False)])
        rows.append((f"c{i}", copy, int(rng.integers(-(2**62), 2**62)), int(rng.integers(-(2**62), 2**62))))
        truth.add((f"c{i}", k) if f"c{i}" < k else (k, f"c{i}"))
    table = pa.table(
        {
            "k": [r[0] for r in rows],
            **{c: pa.array([r[j + 1] for r in rows], pa.int64()) for j, c in enumerate(["h", "h92", "h84"])},
        }
    )
    con = duckdb.connect()
    con.register("live", table)
    found = set(multiview_edges(con, "live", "k", ["h", "h92", "h84"], max_hamming=8))
    assert found == truth  # all 20 copies found through a crop view; no random pair within 8 bits


def test_full_view_pair_within_threshold_is_found_and_far_pair_is_not():
    import pyarrow as pa

    from flywheel.select.dedup_groups import multiview_edges

    a = 0x0123456789ABCDEF
    table = pa.table(
        {
            "k": ["a", "b", "c"],
            "h": pa.array([a, _flip(a, [1, 9, 17, 33, 40, 63]), _flip(a, list(range(0, 64, 5)))], pa.int64()),
            "h92": pa.array([None, None, None], pa.int64()),
        }
    )
    con = duckdb.connect()
    con.register("live", table)
    assert multiview_edges(con, "live", "k", ["h", "h92"], max_hamming=8) == [("a", "b")]
