"""Search the pool's index by text, image or id, choosing the table whose space can embed the query."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa

from flywheel.errors import MissingInput, UserError
from flywheel.models.embedders import EfficientNetImageEmbedder, MiniLMTextEmbedder, clip_from_config
from flywheel.retrieval.config import IndexConfig
from flywheel.retrieval.engine import IndexError_, RetrievalEngine
from flywheel.workspace import Workspace

COLUMNS = [
    "id",
    "uri",
    "caption",
    "curated",
    "kept_in",
    "reject_reason",
    "nsfw_score",
    "entropy_bits",
    "clip_score",
    "width",
    "height",
]


def search_pool(
    ws: Workspace,
    *,
    text: str | None = None,
    image: Path | None = None,
    sample_id: str | None = None,
    where: str | None = None,
    k: int = 10,
    cfg: IndexConfig | None = None,
) -> pa.Table:
    """Arrow table of neighbours; schema metadata `flywheel.space` names the embedding space used.

    Text queries use CLIP image search when CLIP weights are configured and indexed, else caption search
    (MiniLM). Image queries and id queries search the EfficientNet image table (or CLIP's when configured).
    """
    cfg = cfg or IndexConfig.for_workspace(ws)
    if not ws.index_dir.is_dir():
        raise IndexError_(f"no index in {ws.root}: run `flywheel index --workspace {ws.root}` first")
    engine = RetrievalEngine(ws.index_dir, cfg.ann)
    clip = clip_from_config(cfg)
    names = set(engine.table_names())
    clip_table = next((t for t in engine.tables() if clip is not None and t.space == clip.space), None)
    if text is not None:
        if clip_table is not None and clip is not None:
            return engine.search(clip_table.name, clip.embed_texts([text])[0], k=k, where=where, columns=COLUMNS)
        embedder = MiniLMTextEmbedder(cfg.text_max_length)
        table = engine.find("caption", text_queries=True)
        return engine.search(table.name, embedder.embed_texts([text])[0], k=k, where=where, columns=COLUMNS)
    if image is not None:
        if not image.is_file():
            raise MissingInput(f"--image {image} is not a file")
        img_embedder = (
            clip if clip_table is not None and clip is not None else EfficientNetImageEmbedder(cfg.image_size)
        )
        vectors, ok = img_embedder.embed_images([image.read_bytes()])
        if not ok[0]:
            raise UserError(f"--image {image} cannot be decoded as an image")
        table = clip_table or engine.find("image", text_queries=False)
        return engine.search(table.name, vectors[0], k=k, where=where, columns=COLUMNS)
    assert sample_id is not None
    image_tables = [t for t in engine.tables() if t.field == "image"]
    for t in image_tables + [t for t in engine.tables() if t.field == "caption"]:
        if t.name in names:
            try:
                vec = engine.vector_of(t.name, sample_id)
            except IndexError_:
                continue
            return engine.search(t.name, vec, k=k, where=where, columns=COLUMNS)
    raise IndexError_(f"id {sample_id} is not in the index; ids come from the pool (flywheel search --text ...)")
