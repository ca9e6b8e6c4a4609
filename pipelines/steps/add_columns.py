"""Score only the columns an existing pool lacks (new CPU filters), shard by shard, without re-ingesting.

`flywheel score-missing -w WS [--filters a,b]` reads each pool shard, finds which of the requested CPU
filters have no columns there yet, decodes the stored image bytes once for all of them, appends their
columns and rewrites the shard atomically through the shard store (same fingerprint, new marker). Filters
whose columns are all present are not run, so re-selecting a new recipe after adding filters costs only the
new columns. Model filters are not added here (they need the actor pool of `flywheel score`); they are
reported as skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from filters.base import CpuScorer, SampleBatch
from filters.broken import BrokenScorer
from filters.config import ScoringConfig
from filters.registry import build, is_model, resolve
from flywheel.errors import MissingInput
from flywheel.imaging import decode
from flywheel.workspace import Workspace


@dataclass
class AddResult:
    shards: int = 0
    rewritten: int = 0
    rows: int = 0
    added: dict[str, int] = field(default_factory=dict)  # filter -> shards it was computed on
    skipped_models: list[str] = field(default_factory=list)


def add_missing_columns(
    workspace: Workspace,
    filters: Sequence[str] | None = None,
    cfg: ScoringConfig | None = None,
    log: Callable[[str], None] = print,
) -> AddResult:
    cfg = cfg or ScoringConfig()
    classes = [c for c in resolve(filters, include_optional=True) if c is not BrokenScorer]
    result = AddResult(skipped_models=[c.name for c in classes if is_model(c)])
    cpu_classes = [c for c in classes if not is_model(c)]
    store = workspace.pool
    store.clean_temporaries()
    infos = list(store.infos())
    if not infos:
        raise MissingInput(f"no scored pool in {workspace.pool_dir}: run `flywheel score` first")
    columns: set[str] = set()
    for info in infos:
        result.shards += 1
        path = store.shard_path(info.index)
        names = set(pq.read_schema(path).names)
        todo = [c for c in cpu_classes if not all(col.name in names for col in c.columns)]
        if not todo:
            columns |= names
            continue
        table = pq.read_table(path)
        scorers: list[CpuScorer] = [build(c, cfg) for c in todo]  # type: ignore[misc]
        view = max([s.view_short_side for s in scorers] + [32])
        images = table.column("image").to_pylist()
        captions = table.column("caption").to_pylist() if "caption" in names else [None] * table.num_rows
        batch = SampleBatch(
            ids=table.column("id").to_pylist(),
            images=images,
            captions=captions,
            decoded=[decode(img, view, cfg.limits) for img in images],
            uris=table.column("uri").to_pylist() if "uri" in names else [],
        )
        for scorer in scorers:
            arrays = scorer.to_arrays(scorer(batch))
            for name, array in arrays.items():
                if name in table.column_names:  # a partial earlier run: replace, never duplicate
                    table = table.drop_columns([name])
                table = table.append_column(pa.field(name, array.type, nullable=True), array)
            result.added[scorer.name] = result.added.get(scorer.name, 0) + 1
        store.write(info.index, table, info.fingerprint)
        result.rewritten += 1
        result.rows += table.num_rows
        columns |= set(table.column_names)
        log(f"shard {info.index}: added {[s.name for s in scorers]}")
    manifest = store.read_manifest() if (workspace.pool_dir / "_manifest.json").is_file() else {}
    extra = {k: v for k, v in manifest.items() if k not in ("schema_version", "shards", "rows", "bytes")}
    known = list(extra.get("columns", []))
    extra["columns"] = known + sorted(columns - set(known))
    store.write_manifest(extra)
    return result
