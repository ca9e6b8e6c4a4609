"""Nearest pool and curated samples of a bad case, from the retrieval engine (when an index exists).

The query is the case's concept (expected object label, else the prompt) embedded in the caption table's
space: the same lookup the router's coverage evidence uses, so the thumbnails an annotator sees are the
neighbours that made the router say "the pool covers this" or "it does not". The text embedder loads once,
on the first case page that needs it; answers are memoised per concept.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

from flywheel.retrieval import IndexError_, RetrievalEngine, TextEmbedder
from flywheel.routing.evidence import concepts_of
from flywheel.workspace import Workspace

K = 6
MEMO = 512


class NeighbourFinder:
    def __init__(self, ws: Workspace, embedder: TextEmbedder | None = None) -> None:
        self.ws = ws
        self._embedder = embedder
        self._lock = threading.Lock()
        self._memo: OrderedDict[str, dict[str, Any]] = OrderedDict()

    def _engine(self) -> RetrievalEngine | None:
        root = self.ws.index_dir
        return RetrievalEngine(root) if root.is_dir() else None

    def embedder(self) -> TextEmbedder:
        with self._lock:
            if self._embedder is None:
                from flywheel.models.embedders import MiniLMTextEmbedder

                self._embedder = MiniLMTextEmbedder()
            return self._embedder

    def for_case(self, case: dict[str, Any]) -> dict[str, Any]:
        """{'space', 'pool': [...], 'curated': [...]} or {'missing': why} when there is no usable index."""
        concept = concepts_of(case)[0]
        if concept in self._memo:
            return self._memo[concept]
        engine = self._engine()
        if engine is None:
            return {"missing": "no index in this workspace: run `flywheel index` to see neighbours"}
        try:
            table = engine.find("caption", text_queries=True)
            embedder = self.embedder()
            if embedder.space != table.space:
                return {"missing": f"index holds {table.space.describe()}, not {embedder.space.describe()}"}
            vec = embedder.embed_texts([concept])[0]
            out: dict[str, Any] = {"space": table.space.describe(), "concept": concept}
            for key, where in (("pool", None), ("curated", "curated = true")):
                hits = engine.search(table.name, vec, k=K, where=where, columns=["id", "caption", "reject_reason"])
                out[key] = hits.to_pylist()
        except IndexError_ as exc:
            return {"missing": str(exc)}
        with self._lock:
            self._memo[concept] = out
            while len(self._memo) > MEMO:
                self._memo.popitem(last=False)
        return out
