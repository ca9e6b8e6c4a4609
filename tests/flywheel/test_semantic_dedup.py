"""`dedup: semantic`: k-means + exact cosine within clusters, one kept per group, on a hand-made pool."""

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.config import ConfigError
from flywheel.recipes import load_recipe
from flywheel.select import RecipeError, read_rejected, select
from flywheel.select.semantic_dedup import cluster_count, read_embeddings, semantic_groups
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace

DIM = 1280
EMBEDDING = pa.list_(pa.float32(), DIM)


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _near(base: np.ndarray, distance: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at cosine distance `distance` from unit `base` (a random orthogonal direction)."""
    noise = rng.normal(size=base.shape)
    noise -= noise.dot(base) * base
    noise /= np.linalg.norm(noise)
    cos = 1.0 - distance
    return _unit(cos * base + np.sqrt(1 - cos**2) * noise)


def _pool(ws: Workspace, with_embedding: bool = True) -> dict[str, np.ndarray]:
    """Two shards: a group of three (a, a_small at 0.01, a_far at 0.03), a pair (b, b_dup at 0.02), a chain
    (c0 - c1 - c2, each step 0.03 but c0 to c2 further), distinct rows, and one null embedding."""
    rng = np.random.default_rng(7)
    a, b, c0 = (_unit(rng.normal(size=DIM)) for _ in range(3))
    c1 = _near(c0, 0.03, rng)
    c2 = _near(c1, 0.03, rng)
    vecs = {
        "a": a,
        "a_small": _near(a, 0.01, rng),
        "a_far": _near(a, 0.03, rng),
        "b": b,
        "b_dup": _near(b, 0.02, rng),
        "c0": c0,
        "c1": c1,
        "c2": c2,
        **{f"d{i}": _unit(rng.normal(size=DIM)) for i in range(6)},
    }
    megapixels = {"a": 1.0, "a_small": 0.2, "a_far": 0.5, "b": 0.3, "b_dup": 0.8, "c0": 0.1, "c1": 0.9, "c2": 0.2}
    uris = [*vecs, "broken"]
    store = ShardStore(ws.pool_dir)
    for part, chunk in enumerate((uris[:7], uris[7:])):
        n = len(chunk)
        columns = {
            "id": [f"id_{u}" for u in chunk],
            "uri": chunk,
            "partition": [part] * n,
            "task": ["T2I"] * n,
            "image": [b"x"] * n,
            "file_bytes": [100] * n,
            "resolution_megapixels": pa.array([megapixels.get(u, 0.5) for u in chunk], pa.float32()),
            "aesthetic_score": pa.array([9.0 if u == "a_small" else 5.0 for u in chunk], pa.float32()),
        }
        if with_embedding:
            columns["image_embedding"] = pa.array([vecs[u].tolist() if u in vecs else None for u in chunk], EMBEDDING)
        store.write(part, pa.table(columns), f"fp{part}")
    return vecs


def _recipe(tmp_path: Path, extra: str = "") -> str:
    path = tmp_path / "sem.yaml"
    path.write_text(
        "name: sem\nrules:\n  - name: semantic_dup\n    column: image_embedding\n    dedup: semantic\n"
        f"    eps: 0.04\n{extra}"
    )
    return str(path)


def _kept(sel) -> set[str]:
    tables = [pq.read_table(p, columns=["uri"]) for p in sorted(sel.out_dir.glob("part-*.parquet"))]
    return set(pa.concat_tables(tables).column("uri").to_pylist())


def test_semantic_dedup_keeps_the_best_member_of_each_group(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    sel = select(ws, load_recipe(_recipe(tmp_path)))
    sel.funnel.check()
    rule = sel.funnel.rules[0]
    # a (1.0 MP) beats a_small and a_far; b_dup (0.8 MP) beats b; the chain is one group, c1 (0.9 MP) kept
    assert _kept(sel) == {"a", "b_dup", "c1", "broken", *(f"d{i}" for i in range(6))}
    assert (rule.removed, rule.groups, rule.null_rows) == (5, 3, 1)
    assert "k-means clusters" in rule.note
    rejected = {r["uri"]: r for r in read_rejected(ws, "sem", "semantic_dup", 10).to_pylist()}
    assert rejected["a_small"]["duplicate_of"] == "id_a" and rejected["b"]["duplicate_of_uri"] == "b_dup"
    assert abs(float(rejected["a_small"]["value"]) - 0.01) < 1e-3  # the cosine distance to the kept member
    assert (
        rejected["a_small"]["reason"] == "semantic_dup"
        and "1 - cos(image_embedding) <= 0.04" in rejected["a_small"]["why"]
    )


def test_best_by_quality_column_picks_the_kept_member(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    sel = select(ws, load_recipe(_recipe(tmp_path, "    best_by: aesthetic_score\n")))
    kept = _kept(sel)
    assert "a_small" in kept and "a" not in kept  # highest aesthetic_score, though fewest pixels


def test_eps_override_and_cluster_count_change_the_result_predictably(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    recipe = load_recipe(_recipe(tmp_path))
    tight = select(ws, recipe.with_overrides({"semantic_dup.eps": "0.015"}))
    assert tight.funnel.rules[0].removed == 1  # only a_small (0.01) is within 0.015
    many = select(ws, recipe.with_overrides({"semantic_dup.clusters": "5"}))
    assert many.funnel.rules[0].removed == 5  # guests across cluster boundaries: the same groups


def test_pool_without_embeddings_fails_with_the_filter_to_run(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws, with_embedding=False)
    with pytest.raises(RecipeError, match=r"no image_embedding column; score it with the `embedding` filter"):
        select(ws, load_recipe(_recipe(tmp_path)), known_columns={"image_embedding": "embedding"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("    eps: 1.5\n", "eps must be a cosine distance"),
        ("    clusters: 0\n", "clusters must be a whole number"),
    ],
)
def test_semantic_parameters_are_checked(tmp_path, body, message):
    path = tmp_path / "bad.yaml"
    path.write_text(f"name: bad\nrules:\n  - name: s\n    column: image_embedding\n    dedup: semantic\n{body}")
    with pytest.raises(ConfigError, match=message):
        load_recipe(str(path))


def test_eps_on_a_non_semantic_rule_is_an_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nrules:\n  - name: d\n    column: dedup_sha256\n    dedup: exact\n    eps: 0.1\n")
    with pytest.raises(ConfigError, match="semantic dedup only"):
        load_recipe(str(path))


def test_semantic_dedup_on_a_non_embedding_column_is_an_error(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    _pool(ws)
    path = tmp_path / "bad.yaml"
    path.write_text("name: bad\nrules:\n  - name: s\n    column: file_bytes\n    dedup: semantic\n")
    with pytest.raises(RecipeError, match="needs an embedding column"):
        select(ws, load_recipe(str(path)))


def test_groups_match_brute_force_and_are_deterministic():
    rng = np.random.default_rng(0)
    centres = _unit(rng.normal(size=(40, 64)))
    x = _unit(centres[rng.integers(0, 40, 600)] + rng.normal(scale=0.04, size=(600, 64)))
    eps = 0.02
    sims = x @ x.T
    truth = {(i, j) for i, j in zip(*np.nonzero(np.triu(sims >= 1 - eps, 1)), strict=True)}
    from flywheel.select.dedup_groups import groups_from_edges

    expected = groups_from_edges([(int(i), int(j)) for i, j in truth])
    groups, stats = semantic_groups(x, eps, clusters=12)
    assert groups == expected and stats.pairs == len(truth) and stats.clusters == 12
    assert semantic_groups(x, eps, clusters=12)[0] == groups  # seeded k-means: the same groups again


def test_cluster_count_follows_sqrt_rows_unless_given():
    assert (cluster_count(1_000_000), cluster_count(10), cluster_count(5, clusters=50), cluster_count(0)) == (
        1000,
        4,
        5,
        1,
    )


def test_read_embeddings_reads_only_live_non_null_rows(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    vecs = _pool(ws)
    files = sorted(ws.pool_dir.glob("part-*.parquet"))
    ids, x = read_embeddings(files, "id", "image_embedding", pa.array(["id_a", "id_broken", "id_d0"]))
    assert ids.to_pylist() == ["id_a", "id_d0"] and x.shape == (2, DIM)
    assert np.allclose(x[0], vecs["a"])


def test_rule_without_eps_uses_the_measured_default(tmp_path):
    from flywheel.recipes.recipe import SEMANTIC_EPS

    path = tmp_path / "d.yaml"
    path.write_text("name: d\nrules:\n  - name: s\n    column: image_embedding\n    dedup: semantic\n")
    rule = load_recipe(str(path)).rules[0]
    assert rule.semantic_eps == SEMANTIC_EPS == 0.10
    assert f"<= {SEMANTIC_EPS}" in rule.describe() and "sqrt(rows) k-means clusters" in rule.describe()
