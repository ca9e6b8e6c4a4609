"""A tiny real workspace for the dashboard tests, built with the core's APIs (no demo, no models).

Pool: 48 samples in 3 shards with images, categories and scores; one selection (entropy, nsfw and broken
rules); 420 bad cases with images and routing evidence; a caption index in a small hashed text space; a
training log and two evaluation summaries. Users: one per role.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from fastapi.testclient import TestClient

from dashboards.app import create_app
from dashboards.neighbours import NeighbourFinder
from dashboards.users import UserStore
from flywheel.badcases import BadCase, BadCaseStore, Route
from flywheel.ids import sample_id
from flywheel.recipes import load_recipe
from flywheel.retrieval import EmbeddingSpace, RetrievalEngine
from flywheel.retrieval.engine import vectors_to_arrow
from flywheel.retrieval.space import l2_normalise
from flywheel.select import select
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from tests.images import encode, photo_like

PASSWORD = "correct horse battery"
N_CASES = 420
HASH_SPACE = EmbeddingSpace("test/hashed-words", 32, text_queries=True)
RECIPE = """name: tiny
description: test recipe
stage: 1
resolution: 64
tasks: [T2I]
rules:
  - name: broken
    column: broken_reason
    is_null: true
    why: the file cannot be decoded
  - name: entropy
    column: entropy_bits
    min: 2.0
    why: flat image
  - name: nsfw
    column: nsfw_score
    max: 0.7
    why: open_nsfw probability too high
"""


class HashedWords:
    """A deterministic text embedder (bag of hashed words), so neighbour tests need no model."""

    space = HASH_SPACE

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), HASH_SPACE.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, int(hashlib.md5(word.encode()).hexdigest(), 16) % HASH_SPACE.dim] += 1.0
        return l2_normalise(out + 1e-6)


CATEGORIES = ("cat", "dog", "car")


def build_workspace(root: Path) -> Workspace:
    ws = Workspace.at(root)
    store = ShardStore(ws.pool_dir)
    captions = []
    for part in range(3):
        rows = []
        for j in range(16):
            k = part * 16 + j
            image = encode(photo_like(72, 64, seed=k), "JPEG") if k % 12 else b"not an image"
            caption = f"a photo of a {CATEGORIES[k % 3]} number {k}"
            captions.append(caption)
            rows.append(
                {
                    "id": sample_id("folder", f"mem://{k}"),
                    "uri": f"mem://{k}",
                    "partition": part,
                    "image": image,
                    "caption": caption,
                    "task": "T2I",
                    "category": CATEGORIES[k % 3],
                    "width": 72,
                    "height": 64,
                    "file_bytes": len(image),
                    "resolution_megapixels": 72 * 64 / 1e6,
                    "broken_reason": None if k % 12 else "not_image",
                    "entropy_bits": float(k % 8),
                    "nsfw_score": (k % 10) / 10.0,
                    "dedup_phash": k,
                }
            )
        store.write(part, pa.Table.from_pylist(rows), fingerprint=f"test:{part}")
    store.write_manifest({})
    recipe_path = root / "tiny.yaml"
    recipe_path.write_text(RECIPE)
    select(ws, load_recipe(str(recipe_path)))

    from flywheel.retrieval.metadata import pool_metadata

    meta = pool_metadata(ws)
    vectors = HashedWords().embed_texts(meta.column("caption").to_pylist())
    engine = RetrievalEngine(ws.root / "index")
    engine.add("caption", HASH_SPACE, meta.append_column("vector", vectors_to_arrow(vectors)))

    bc = BadCaseStore.for_workspace(ws.root)
    images = [bc.put_image(encode(photo_like(64, 64, seed=100 + i), "PNG"), "test") for i in range(6)]
    cases = []
    for i in range(N_CASES):
        cases.append(
            BadCase(
                content_key=hashlib.sha256(f"case {i}".encode()).hexdigest(),
                kind="bad",
                source=("evaluation", "mining", "feedback")[i % 3],
                prompt=f"a {CATEGORIES[i % 3]} on a table" if i < 12 else f"prompt number {i}",
                origin=f"test:{i}",
                task="TI2I" if i % 7 == 0 else "T2I",
                input_image=images[5] if i % 7 == 0 else None,
                output_image=images[i % 5],
                metrics={"label_prob": 0.1 + (i % 5) / 10},
                reward=0.2,
                failure_tags=["object_missing"] if i % 2 else ["low_quality"],
                checkpoint=f"stage1/step-{10 * (1 + i % 2):07d}",
                step=10 * (1 + i % 2),
                expected_label=CATEGORIES[i % 3],
                created_at=f"2026-01-{1 + i % 5:02d}T00:00:00+00:00",
            )
        )
    bc.ingest(cases)
    evidence = {
        "rule": "uncovered_concept",
        "rule_track": "pretrain",
        "why": "the pool lacks the concept",
        "conditions": {"curated_top_sim": {"value": 0.3, "min": None, "max": 0.5}},
        "curated_top_sim": 0.3,
        "learned": {"track": "pretrain", "probability": 0.81, "cv_agreement": 0.7},
    }
    bc.record_routes([Route(c["case_id"], "pretrain", "rule:uncovered_concept", evidence) for c in bc.list()[:200]])

    ws.runs_dir.mkdir(parents=True, exist_ok=True)
    with (ws.runs_dir / "train-stage1_tiny_cpu.jsonl").open("w") as fh:
        for step in range(10, 110, 10):
            fh.write(json.dumps({"step": step, "loss": 1.0 / step, "lr": 1e-4, "samples_per_s": 5.0}) + "\n")
        fh.write('{"step": 11')  # a line cut short by a crash
    for step, rate in ((10, 0.4), (20, 0.55)):
        d = ws.root / "evaluations" / f"stage1-step-{step:07d}"
        d.mkdir(parents=True)
        (d / "summary.json").write_text(
            json.dumps(
                {
                    "pass_rate": rate,
                    "outputs": 8,
                    "categories": {"object": {"pass_rate": rate, "mean_reward": rate / 2, "outputs": 8}},
                }
            )
        )

    users = UserStore(ws.root)
    for name, role in (("ann", "annotator"), ("eng", "engineer"), ("root", "admin")):
        users.add(name, role, PASSWORD)
    for i in range(8):
        users.add(f"ann{i}", "annotator", PASSWORD)
    return ws


@pytest.fixture(scope="session")
def workspace_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dash-template")
    build_workspace(root)
    return root


@pytest.fixture()
def ws(workspace_template: Path, tmp_path: Path) -> Workspace:
    """A fresh copy of the template per test (decisions of one test never leak into another)."""
    import shutil

    dst = tmp_path / "ws"
    shutil.copytree(workspace_template, dst, ignore=shutil.ignore_patterns("cache", "thumbs"))
    return Workspace.at(dst)


@pytest.fixture()
def app(ws: Workspace):
    return create_app(ws.root, neighbours=NeighbourFinder(ws, HashedWords()))


def csrf_of(client: TestClient) -> str:
    page = client.get("/login")
    text = page.text
    marker = 'name="csrf-token" content="'
    return text[text.index(marker) + len(marker) :].split('"', 1)[0]


@pytest.fixture()
def login(app) -> Iterator[Callable[[str], TestClient]]:
    clients: list[TestClient] = []

    def make(name: str) -> TestClient:
        client = TestClient(app, headers={"accept": "text/html"})
        token = csrf_of(client)
        resp = client.post(
            "/login",
            data={"username": name, "password": PASSWORD, "csrf": token, "next": "/triage"},
            follow_redirects=False,
        )
        assert resp.status_code == 303, resp.text
        client.csrf = csrf_of(client)  # type: ignore[attr-defined]  # login issues a new token
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()
