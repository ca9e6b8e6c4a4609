"""Pretrain expansion over the pool and a reservoir: recipe quality rules, distribution-only rejections, dedup."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.reservoir import list_reservoirs, register, reservoir_workspace
from flywheel.retrieval import EmbeddingSpace, RetrievalEngine
from flywheel.retrieval.engine import vectors_to_arrow
from flywheel.store.images import attach_bytes
from flywheel.store.shards import ShardStore
from flywheel.tracks.pretrain import ExpansionConfig, SearchSource, expand
from flywheel.workspace import Workspace

TEXT = EmbeddingSpace("fake-text", 4, text_queries=True)
IMAGE = EmbeddingSpace("fake-image", 4, text_queries=False)
CONCEPTS = ("giraffe", "cat", "dog", "tree")


class Words:
    """A text embedder that puts each known concept on its own axis (plus a little of the others)."""

    space = TEXT

    def embed_texts(self, texts):
        out = np.full((len(texts), 4), 0.05, np.float32)
        for i, t in enumerate(texts):
            for j, c in enumerate(CONCEPTS):
                if c in t.lower():
                    out[i, j] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _unit(v):
    v = np.asarray(v, np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _scored(ws: Workspace, rows: list[dict]) -> RetrievalEngine:
    """Pool shard + caption and image index tables for `rows` (id, caption, curated, reason, nsfw, img)."""
    n = len(rows)
    table = pa.table(
        {
            "id": [r["id"] for r in rows],
            "uri": [r["id"] + ".jpg" for r in rows],
            "partition": [0] * n,
            "task": ["T2I"] * n,
            "image": [b"img-" + r["id"].encode() for r in rows],
            "caption": [r["caption"] for r in rows],
            "broken_reason": pa.array([None] * n, pa.string()),
            "resolution_min_side": pa.array([512] * n, pa.int32()),
            "nsfw_score": pa.array([r.get("nsfw", 0.0) for r in rows], pa.float32()),
            "entropy_bits": pa.array([r.get("entropy", 4.0) for r in rows], pa.float32()),
            "caption_issue": pa.array([None] * n, pa.string()),
            "caption_tokens": pa.array([8] * n, pa.int32()),
        }
    )
    store = ShardStore(ws.pool_dir)
    store.write(0, table, "fp")
    store.write_manifest({})
    engine = RetrievalEngine(ws.root / "index")
    meta = {
        "id": [r["id"] for r in rows],
        "curated": [r.get("curated", False) for r in rows],
        "reject_reason": pa.array([r.get("reason") for r in rows], pa.string()),
        "broken_reason": pa.array([None] * n, pa.string()),
        "caption": [r["caption"] for r in rows],
    }
    engine.add("caption", TEXT, pa.table({**meta, "vector": vectors_to_arrow(Words().embed_texts(meta["caption"]))}))
    engine.add("image", IMAGE, pa.table({**meta, "vector": vectors_to_arrow(_unit([r["img"] for r in rows]))}))
    return engine


def test_expansion_reaches_reservoirs_with_recipe_thresholds(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    pool = _scored(
        ws,
        [
            {"id": "p_cur", "caption": "a giraffe eating", "curated": True, "img": [1, 0, 0, 0]},
            {"id": "p_dist", "caption": "a giraffe at dusk", "reason": "entropy", "entropy": 0.1, "img": [0, 1, 0, 0]},
            {"id": "p_nsfw", "caption": "a giraffe, nsfw", "reason": "nsfw", "nsfw": 0.9, "img": [0, 0, 1, 0]},
            {"id": "p_dup", "caption": "a giraffe copy", "reason": "near_dup", "img": [0, 0, 0, 1]},
            {"id": "p_cat", "caption": "a cat", "curated": True, "img": [1, 1, 0, 0]},
        ],
    )
    rws = reservoir_workspace(ws, "zoo")
    zoo = _scored(
        rws,
        [
            {"id": "r_gir1", "caption": "a giraffe in the zoo", "img": [0, 0, 1, 1]},
            {"id": "r_gir2", "caption": "a giraffe in the zoo again", "img": [0, 0, 1, 1.02]},  # near-duplicate
            {"id": "r_gir3", "caption": "a giraffe like the curated one", "img": [1, 0.01, 0, 0]},  # dup of curated
            {"id": "r_nsfw", "caption": "a giraffe, explicit", "nsfw": 0.95, "img": [1, 0, 1, 0]},
            {"id": "r_dog", "caption": "a dog", "img": [0, 1, 1, 0]},
        ],
    )
    register(ws, "zoo", "/data/zoo", 5)
    assert [r.provenance for r in list_reservoirs(ws)] == ["reservoir:zoo"]
    case = {"case_id": "c1", "prompt": "a giraffe", "expected_label": "giraffe"}
    result = expand(
        ws,
        pool,
        [Words()],
        [case],
        ExpansionConfig(min_similarity=0.5),
        reservoirs=[SearchSource("reservoir:zoo", rws, zoo)],
    )
    stored = pq.read_table(result.path)
    assert "image" not in stored.column_names  # bytes once: the track references pool and reservoir rows
    rows = attach_bytes(stored, Path(result.path)).to_pylist()
    got = {r["id"]: r for r in rows}
    # distribution-only rejection comes back; NSFW (a quality rule) and duplicates never do
    assert set(got) == {"p_dist", "r_gir1"}, set(got)
    assert got["p_dist"]["provenance"] == "pool" and got["r_gir1"]["provenance"] == "reservoir:zoo"
    assert all(r["badcase_id"] == "c1" and r["image"].startswith(b"img-") for r in rows)
    assert result.below_quality == 1 and result.dropped_as_duplicates == 2
    assert result.by_provenance == {"pool": 1, "reservoir:zoo": 1}


def test_expansion_threshold_follows_the_recipe(tmp_path):
    """A recipe that tightens nsfw.max drops what the built-in one keeps: the threshold is not in the track."""
    from flywheel.recipes.recipe import _builtin_dir

    ws = Workspace.at(tmp_path / "ws")
    pool = _scored(ws, [{"id": "p1", "caption": "a giraffe", "nsfw": 0.5, "img": [0, 1, 0, 0]}])
    case = {"case_id": "c1", "prompt": "a giraffe", "expected_label": "giraffe"}
    assert expand(ws, pool, [Words()], [case]).written == 1
    strict = tmp_path / "strict.yaml"
    strict.write_text((_builtin_dir() / "stage1_256p.yaml").read_text().replace("max: 0.7", "max: 0.3"))
    assert expand(ws, pool, [Words()], [case], ExpansionConfig(recipe=str(strict))).written == 0
