"""Steps run without an index config (search, route, tracks) use the one `flywheel index` stored."""

from __future__ import annotations

import dataclasses

import numpy as np
import pyarrow as pa

from flywheel.retrieval import AnnConfig, EmbeddingSpace, IndexConfig, RetrievalEngine
from flywheel.retrieval.engine import vectors_to_arrow
from flywheel.workspace import Workspace
from pipelines.steps.loop import engine_for

SPACE = EmbeddingSpace("test-model", 4, text_queries=True)


def test_steps_without_a_config_use_the_stored_one(tmp_path) -> None:
    ws = Workspace.at(tmp_path / "ws")
    v = np.eye(4, dtype=np.float32)
    RetrievalEngine(ws.index_dir).add("caption", SPACE, pa.table({"id": list("abcd"), "vector": vectors_to_arrow(v)}))
    assert engine_for(ws).ann == AnnConfig()  # type: ignore[union-attr]
    dataclasses.replace(IndexConfig(), ann=AnnConfig(min_rows=700, nprobes=3)).store(ws)
    engine = engine_for(ws)
    assert engine is not None and engine.ann == AnnConfig(min_rows=700, nprobes=3)
    assert engine.table_names()  # the YAML beside the tables is not taken for a table
