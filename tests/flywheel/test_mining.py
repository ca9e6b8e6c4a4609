"""Mining: probe prompts near failures (bank + pool captions), mined cases with provenance, reach, suspects."""

from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from flywheel.badcases import BadCaseStore, Route
from flywheel.badcases.schema import BadCase
from flywheel.mining import MiningConfig, confirmed_failures, data_suspects, probe_cases, probe_prompts, reach
from flywheel.workspace import Workspace
from tests.flywheel.tracks.test_pretrain import Words, _scored


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), "red").save(buf, format="PNG")
    return buf.getvalue()


def _failure(store: BadCaseStore) -> dict:
    store.ingest(
        [
            BadCase(
                content_key="k1",
                kind="bad",
                source="evaluation",
                prompt="a giraffe standing",
                origin="eval#0",
                prompt_id="obj_giraffe",
                task="T2I",
                category="object",
                expected_label="giraffe",
                reward=0.1,
            )
        ]
    )
    (case,) = store.list(kind="bad")
    store.record_routes([Route(case["case_id"], "pretrain", "rule:test", {})])
    return confirmed_failures(store)[0]


def test_probes_reach_and_mined_cases(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    engine = _scored(
        ws,
        [
            {"id": "p1", "caption": "a giraffe by a tree", "curated": True, "img": [1, 0, 0, 0]},
            {"id": "p2", "caption": "a dog", "img": [0, 1, 0, 0]},
        ],
    )
    store = BadCaseStore.for_workspace(ws.root)
    failure = _failure(store)
    bank = [
        {"prompt": "a giraffe standing", "prompt_id": "obj_giraffe", "category": "object", "expected_label": "giraffe"},
        {"prompt": "a giraffe and a cat", "prompt_id": "b1", "category": "scene"},
        {"prompt": "a cat", "prompt_id": "b2", "category": "scene"},
    ]
    probes = probe_prompts([failure], bank, Words(), engine, MiningConfig(k_bank=2, k_pool=2, min_similarity=0.6))
    got = {p.prompt: p for p in probes}
    assert set(got) == {"a giraffe and a cat", "a giraffe by a tree"}  # own prompt and unrelated ones excluded
    assert got["a giraffe by a tree"].came_from == "pool_caption:p1"
    assert all(p.expected_label == "giraffe" and p.category == "object" for p in probes)
    rows = [
        {
            "prompt": p.prompt,
            "seed": s,
            "passed": p.prompt == "a giraffe by a tree",
            "metrics": [("label_prob", 0.1 * s)],
            "reward": 0.1 * s,
            "failure_tags": [] if p.prompt == "a giraffe by a tree" else ["object_missing"],
            "checkpoint": "ck",
            "step": 3,
            "output_image": _png(),
        }
        for p in probes
        for s in (0, 1)
    ]
    added = store.ingest(probe_cases(store, probes, rows, "run1"))
    assert added.added == 4 and store.ingest(probe_cases(store, probes, rows, "run1")).added == 0  # idempotent
    mined = store.list(kind=None, source="mining")
    assert sorted(c["kind"] for c in mined) == ["bad", "bad", "reference", "reference"]
    origin = json.loads(mined[0]["origin"])
    assert origin["mined_by"] == "probe" and origin["of"] == failure["case_id"]
    assert len({c["prompt_id"] for c in mined}) == 2  # seeds of one probe share a prompt id (RL can pair them)
    (r,) = reach([failure], probes, rows)
    assert (r.probes, r.failed_probes, r.reach) == (2, 1, 0.5) and r.failing == ["a giraffe and a cat"]


def test_data_suspects_are_poorly_scored_matching_training_samples(tmp_path):
    ws = Workspace.at(tmp_path / "ws")
    engine = _scored(
        ws,
        [{"id": f"g{i}", "caption": f"a giraffe photo {i}", "curated": True, "img": [1, 0, 0, i]} for i in range(5)]
        + [{"id": f"c{i}", "caption": f"a cat photo {i}", "curated": True, "img": [0, 1, i, 0]} for i in range(15)],
    )
    pool = pq.read_table(ws.pool.shard_paths()[0])
    clip = [0.3] * pool.num_rows
    clip[2] = 0.05  # g2: a training giraffe whose caption does not describe its image
    pool = pool.append_column("clip_score", pa.array(clip, pa.float32()))
    pool = pool.set_column(pool.schema.get_field_index("image"), "image", pa.array([_png()] * pool.num_rows))
    ws.curated_store("stage1_256p").write(0, pool, fingerprint="test")  # as `flywheel select` writes them
    ws.funnel_path("stage1_256p").write_text("{}")
    store = BadCaseStore.for_workspace(ws.root)
    failure = _failure(store)
    cases = data_suspects(ws, store, [failure], Words(), engine, MiningConfig(suspect_similarity=0.6))
    assert [json.loads(c.origin)["sample_id"] for c in cases] == ["g2"]
    assert cases[0].source == "mining" and "clip_score" in cases[0].complaint and cases[0].output_image
    assert store.ingest(cases).added == 1
