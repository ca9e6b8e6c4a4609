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
