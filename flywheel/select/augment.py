"""Targeted augmentation of a thin category: keyword and image queries into the retrieval index.

Why the retrieval engine and not a SQL condition: a category is assigned from detector scores (a frontal-face
cascade for portraits), and what the detector misses (profiles, small faces) is exactly what a keyword
("portrait of a person") or an example image finds by embedding. The searches are the pretrain track's
(flywheel.tracks.pretrain): the same engine, tables and embedders (MiniLM over captions, CLIP's text tower
over images when configured, the image embedder for example images), over the pool's index and every
registered reservoir's. Only the selection decides what a hit may become: a pool row still alive after every
rule (so it passes the recipe's rules) and sitting in another category.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from flywheel.errors import MissingInput
from flywheel.recipes.sections import Augment
from flywheel.retrieval.engine import IndexError_, RetrievalEngine
from flywheel.retrieval.space import EmbeddingSpace, ImageEmbedder, TextEmbedder
from flywheel.workspace import Workspace


@dataclass
class QueryEmbedders:
    """Embedders for the augmentation queries: text towers (each searches the tables of its own space) and
    image embedders (example images, each against the image tables of its space)."""

    text: list[TextEmbedder] = field(default_factory=list)
    image: list[ImageEmbedder] = field(default_factory=list)


@dataclass
class Hits:
    """Best hit per id: (similarity, query) for the pool, and how many rows each reservoir matched."""

    pool: dict[str, tuple[float, str]] = field(default_factory=dict)
    reservoirs: dict[str, int] = field(default_factory=dict)
    searched: list[str] = field(default_factory=list)  # index tables searched, for the funnel


def query_embedders(ws: Workspace) -> QueryEmbedders:
    """MiniLM (captions) and EfficientNet-Lite0 (images), plus CLIP's towers when the index config names CLIP."""
    from flywheel.models.embedders import EfficientNetImageEmbedder, MiniLMTextEmbedder, clip_from_config
    from flywheel.retrieval.config import IndexConfig

    cfg = IndexConfig.for_workspace(ws)
    out = QueryEmbedders([MiniLMTextEmbedder(cfg.text_max_length)], [EfficientNetImageEmbedder(cfg.image_size)])
    clip = clip_from_config(cfg)
    if clip is not None:
        out.text.append(clip)
        out.image.append(clip)
    return out


def _engine(ws: Workspace, recipe: str) -> RetrievalEngine:
    if not ws.index_dir.is_dir() or not any(ws.index_dir.iterdir()):
        raise IndexError_(
            f"recipe {recipe}: augment searches the retrieval index, but {ws.root} has none: "
            f"run `flywheel index --workspace {ws.root}` first"
        )
    return RetrievalEngine(ws.index_dir)


def search(
    ws: Workspace, spec: Augment, recipe: str, embedders: QueryEmbedders, reservoirs: Sequence[Workspace] = ()
) -> Hits:
    """Search the pool's index (and each reservoir's that has one) with the spec's queries; best hit per id."""
    hits = Hits()
    images: list[tuple[str, bytes]] = []
    for name in spec.images:
        path = Path(name).expanduser()
        if not path.is_file():
            raise MissingInput(f"recipe {recipe}: augment image {name!r} is not a file")
        images.append((name, path.read_bytes()))
    sources = [("pool", _engine(ws, recipe))]
    sources += [(f"reservoir:{r.root.name}", RetrievalEngine(r.index_dir)) for r in reservoirs if r.index_dir.is_dir()]
    for provenance, engine in sources:
        found: dict[str, tuple[float, str]] = {}
        for table in engine.tables():
            for label, vec in _queries(spec, embedders, images, table.space, table.field):
                got = engine.search(table.name, vec, k=spec.k, columns=["id"])
                if provenance == "pool":
                    hits.searched.append(table.name)
                for sid, sim in zip(got.column("id").to_pylist(), got.column("similarity").to_pylist(), strict=True):
                    if sim >= spec.min_similarity and (sid not in found or sim > found[sid][0]):
                        found[sid] = (float(sim), label)
        if provenance == "pool":
            hits.pool = found
        else:
            hits.reservoirs[provenance] = len(found)
    if not hits.searched:
        raise IndexError_(
            f"recipe {recipe}: augment found no index table its queries can search in {ws.index_dir} "
            "(keyword queries need a caption index or CLIP, image queries an image index): run `flywheel index`"
        )
    hits.searched = sorted(set(hits.searched))
    return hits


def _queries(
    spec: Augment, embedders: QueryEmbedders, images: list[tuple[str, bytes]], space: EmbeddingSpace, field_name: str
) -> list[tuple[str, np.ndarray]]:
    """(label, vector) of every query that can search a table of `space`: texts where it takes text queries,
    example images where it embeds images."""
    out: list[tuple[str, np.ndarray]] = []
    for embedder in embedders.text:
        if embedder.space == space and space.text_queries and spec.queries:
            out += list(zip(spec.queries, embedder.embed_texts(spec.queries), strict=True))
    for embedder in embedders.image:
        if embedder.space == space and field_name == "image" and images:
            vectors, ok = embedder.embed_images([data for _, data in images])
            out += [(f"image:{name}", vectors[i]) for i, (name, _) in enumerate(images) if ok[i]]
    return out
