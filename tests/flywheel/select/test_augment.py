"""`augment:` fills a thin category from the retrieval index; only rows that pass the rules move; no index: one line."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.recipes import load_recipe
from flywheel.reservoir import register, reservoir_workspace
from flywheel.retrieval import EmbeddingSpace, RetrievalEngine
from flywheel.retrieval.engine import IndexError_, vectors_to_arrow
from flywheel.retrieval.space import table_name
from flywheel.select import augment, select
from flywheel.workspace import Workspace
from tests.flywheel.select.pools import write_pool

TEXT = EmbeddingSpace("fake-text", 3, text_queries=True)
CONCEPTS = ("portrait", "mountain", "text")

RECIPE = """
name: augmented
tasks: [T2I]
keep_best_by: ["id"]
categories:
  - {name: portrait, when: "face_area_fraction >= 0.02"}
  - {name: general}
rules:
  - {name: ugly, column: aesthetic_score, min: 1.0}
augment:
  category: portrait
  min_share: 0.25
  queries: ["a portrait of a person"]
  min_similarity: 0.8
"""


class Words:
    """A text embedder that puts each known concept on its own axis (plus a little of the others)."""

    space = TEXT

    def embed_texts(self, texts):
        out = np.full((len(texts), 3), 0.05, np.float32)
        for i, t in enumerate(texts):
            for j, c in enumerate(CONCEPTS):
                if c in t.lower():
                    out[i, j] = 1.0
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def _index(ws: Workspace, rows: list[dict]) -> None:
    ids = [r["id"] for r in rows]
    captions = [r["caption"] for r in rows]
    vectors = vectors_to_arrow(Words().embed_texts(captions))
    RetrievalEngine(ws.index_dir).add("caption", TEXT, pa.table({"id": ids, "caption": captions, "vector": vectors}))


def _rows() -> list[dict]:
    rows = [
        {"id": f"p{i}", "face_area_fraction": 0.1, "caption": "a portrait", "aesthetic_score": 5.0} for i in range(2)
    ]
    # portraits the face detector missed (general by the category conditions), two of them rejected by a rule
    rows += [{"id": f"g_face{i}", "caption": "portrait of a person", "aesthetic_score": 5.0} for i in range(6)]
    rows += [{"id": f"g_bad{i}", "caption": "portrait, blurry", "aesthetic_score": 0.0} for i in range(2)]
    rows += [{"id": f"m{i:02d}", "caption": "a mountain", "aesthetic_score": 5.0} for i in range(12)]
    return [{"face_area_fraction": 0.0, **r} for r in rows]


@pytest.fixture
def words(monkeypatch):
    monkeypatch.setattr(augment, "query_embedders", lambda ws: augment.QueryEmbedders(text=[Words()]))


def test_a_thin_category_is_filled_from_the_index_with_rows_that_pass_the_rules(tmp_path, words) -> None:
    ws = Workspace.at(tmp_path / "ws")
    rows = _rows()
    write_pool(ws, rows)
    _index(ws, rows)
    zoo = reservoir_workspace(ws, "zoo")
    _index(zoo, [{"id": "z1", "caption": "portrait in a zoo"}, {"id": "z2", "caption": "a mountain"}])
    register(ws, "zoo", "/data/zoo", 2)
    recipe_file = tmp_path / "augmented.yaml"
    recipe_file.write_text(RECIPE)
    sel = select(ws, load_recipe(str(recipe_file)))
    f = sel.funnel
    f.check()
    # 20 live rows, 2 portraits: 25% needs 5, so the 3 most similar live hits move (ties by id); the two rejected
    # portrait-like rows never move, and rows already in the category are not counted twice
    report = f.rebalance["augment"]
    assert report["moved"] == 3 and report["moved_from"] == {"general": 3} and report["share_after"] == 0.25
    assert report["reservoir_hits"] == {"reservoir:zoo": 1}
    assert f.by_category["portrait"] == {"in": 5, "kept": 5}
    kept = pq.read_table(sorted(sel.out_dir.glob("part-*.parquet"))).to_pylist()
    moved = {r["id"]: r["augment_query"] for r in kept if r["augment_query"] is not None}
    assert moved == {f"g_face{i}": "a portrait of a person" for i in range(3)}
    assert {r["category"] for r in kept if r["id"] in moved} == {"portrait"}
    assert "moved 3 retrieved rows" in (ws.selection_dir("augmented") / "funnel.txt").read_text()


def test_a_category_at_its_share_searches_nothing(tmp_path, words) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())  # no index at all: it is not needed when the category is not thin
    recipe_file = tmp_path / "augmented.yaml"
    recipe_file.write_text(RECIPE.replace("min_share: 0.25", "min_share: 0.05"))
    report = select(ws, load_recipe(str(recipe_file))).funnel.rebalance["augment"]
    assert report["moved"] == 0 and "already at its share" in report["note"]


def test_augmenting_without_an_index_is_a_one_line_error(tmp_path, words) -> None:
    ws = Workspace.at(tmp_path / "ws")
    write_pool(ws, _rows())
    recipe_file = tmp_path / "augmented.yaml"
    recipe_file.write_text(RECIPE)
    with pytest.raises(IndexError_, match=r"augment searches the retrieval index.*run `flywheel index") as err:
        select(ws, load_recipe(str(recipe_file)))
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda r: r.replace("category: portrait\n", "category: faces\n"), "not one of the recipe's categories"),
        (lambda r: r.replace("min_share: 0.25", "min_share: 1.5"), "min_share must be a fraction"),
        (lambda r: r.replace('  queries: ["a portrait of a person"]\n', ""), "needs keyword queries or image"),
        (lambda r: r.replace("min_similarity", "similarity"), "unknown config key"),
    ],
)
def test_bad_augment_keys_are_one_line_errors(tmp_path, edit, message) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(edit(RECIPE))
    with pytest.raises(ValueError, match=message):
        load_recipe(str(path))


IMAGE = EmbeddingSpace("fake-image", 2, text_queries=False)


class Pixels:
    """An image embedder that reads the first byte: b'f' (a face) on one axis, anything else on the other."""

    space = IMAGE

    def embed_images(self, images):
        vectors = np.array([[1.0, 0.0] if data.startswith(b"f") else [0.0, 1.0] for data in images], np.float32)
        return vectors, np.ones(len(images), bool)


def test_an_example_image_finds_its_neighbours_in_the_image_index(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(augment, "query_embedders", lambda ws: augment.QueryEmbedders(image=[Pixels()]))
    ws = Workspace.at(tmp_path / "ws")
    rows = _rows()
    write_pool(ws, rows)
    faces = [r["id"].startswith(("p", "g_")) for r in rows]
    vectors = vectors_to_arrow(np.array([[1.0, 0.0] if f else [0.0, 1.0] for f in faces], np.float32))
    RetrievalEngine(ws.index_dir).add("image", IMAGE, pa.table({"id": [r["id"] for r in rows], "vector": vectors}))
    example = tmp_path / "face.jpg"
    example.write_bytes(b"face")
    recipe_file = tmp_path / "augmented.yaml"
    recipe_file.write_text(RECIPE.replace('queries: ["a portrait of a person"]', f"images: [{example}]"))
    sel = select(ws, load_recipe(str(recipe_file)))
    report = sel.funnel.rebalance["augment"]
    assert report["moved"] == 3 and report["searched"] == [table_name("image", IMAGE)]
    kept = pq.read_table(sorted(sel.out_dir.glob("part-*.parquet"))).to_pylist()
    assert {r["id"] for r in kept if r["augment_query"] == f"image:{example}"} == {f"g_face{i}" for i in range(3)}
