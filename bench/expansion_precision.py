"""Precision of retrieval expansion on a labeled pool: the demo corpus (labels from its generator).

    flywheel demo --workspace /tmp/demo-loop && flywheel index --workspace /tmp/demo-loop
    python3 bench/expansion_precision.py --workspace /tmp/demo-loop

Label of a pool row = the source photo whose caption list (corpus/photos.PHOTOS) contains the row's
caption; text renders are labeled by kind ("text"). For each photo concept one bad case is built with the
concept's short noun phrase as prompt, and the pretrain expansion (flywheel.tracks.pretrain.expand, the real
code path: quality filter, similarity floor, faiss dedup) runs twice: as shipped (only non-curated rows, the
demo pool has few) and with `include_curated` (the whole pool, so precision is measured on more rows).
Precision = share of written rows whose label is the concept of the bad case that retrieved them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.photos import PHOTOS
from flywheel.models.embedders import MiniLMTextEmbedder
from flywheel.retrieval.engine import RetrievalEngine
from flywheel.tracks.pretrain import ExpansionConfig, expand
from flywheel.workspace import Workspace


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workspace", type=Path, default=Path("/tmp/demo-loop"))
    args = ap.parse_args()
    ws = Workspace.at(args.workspace)
    label_of = {}
    for name, spec in PHOTOS.items():
        for caption in spec.captions:
            label_of[caption] = name
    engine = RetrievalEngine(ws.index_dir)
    text = MiniLMTextEmbedder()
    present = set()
    for shard in ws.require_pool():
        for caption in pq.read_table(shard, columns=["caption"]).column("caption").to_pylist():
            if caption in label_of:
                present.add(label_of[caption])
    cases = [{"case_id": name, "prompt": PHOTOS[name].subject, "expected_label": None} for name in sorted(present)]
    results = {}
    for mode, cfg in (
        ("shipped (non-curated only)", ExpansionConfig()),
        ("whole pool (include_curated)", ExpansionConfig(include_curated=True)),
    ):
        res = expand(ws, engine, [text], cases, cfg)
        if res.path is None:
            results[mode] = {"written": 0}
            continue
        rows = pq.read_table(res.path, columns=["caption", "expansion_badcase_ids"]).to_pylist()
        hits = Counter()
        for r in rows:
            label = label_of.get(r["caption"], "text" if r["caption"] and "text" in r["caption"] else "other")
            hits[label in r["expansion_badcase_ids"]] += 1
        results[mode] = {
            "cases": len(cases),
            "written": len(rows),
            "correct": hits[True],
            "precision": round(hits[True] / max(1, len(rows)), 4),
            "dropped_as_duplicates": res.dropped_as_duplicates,
        }
    print(json.dumps({"workspace": str(ws.root), "concepts": sorted(present), "results": results}, indent=1))


if __name__ == "__main__":
    main()
