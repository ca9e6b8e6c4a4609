"""Score only the columns an existing pool lacks, shard by shard, without re-ingesting.

`flywheel score-missing -w WS [--filters a,b]` reads each pool shard, finds which of the requested filters
have no columns there yet, decodes the stored image bytes once for all of them (at the same fixed view as
`flywheel score`, so a column added here equals the one a full scoring run writes), appends their columns
and rewrites the shard atomically through the shard store (same fingerprint, new marker). Filters whose
columns are all present are not run, so re-selecting a new recipe after adding filters costs only the new
columns.

Model filters run here too, in this process (one model loaded once for the whole run, batched): adding
`aesthetics` to a scored pool is the common case. Embedding filters read a stored `image_embedding` when the
shard has one, so the network runs only where the embedding itself is missing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from filters.base import CpuScorer, EmbeddingScorer, ModelScorer, SampleBatch, Scorer
from filters.broken import BrokenScorer
from filters.config import ScoringConfig
from filters.registry import build, decode_short_side, is_model, resolve
from flywheel.errors import MissingInput
from flywheel.imaging import Decoded, decode
from flywheel.store import fs as storage
from flywheel.workspace import Workspace
from pipelines.steps.score import check_models
from pipelines.steps.score_stages import score_embeddings, score_model_rows


@dataclass
class AddResult:
    shards: int = 0
    rewritten: int = 0
    rows: int = 0
    added: dict[str, int] = field(default_factory=dict)  # filter -> shards it was computed on
    unavailable: dict[str, str] = field(default_factory=dict)  # filter -> why it was not computed


def add_missing_columns(
    workspace: Workspace,
    filters: Sequence[str] | None = None,
    cfg: ScoringConfig | None = None,
    log: Callable[[str], None] = print,
) -> AddResult:
    cfg = cfg or ScoringConfig()
    classes = [c for c in resolve(filters, include_optional=True) if c is not BrokenScorer]
    store = workspace.pool
    store.clean_temporaries()
    infos = list(store.infos())
    if not infos:
        raise MissingInput(f"no scored pool in {workspace.pool_dir}: run `flywheel score` first")
    # Models are checked before any shard is touched: a configured model that cannot load is one error.
    model_classes, follower_classes, unavailable = check_models(classes, cfg, log)
    result = AddResult(unavailable=unavailable)
    runnable: list[type[Scorer]] = [c for c in classes if not is_model(c)] + [*model_classes, *follower_classes]
    view = decode_short_side(cfg)
    built: dict[str, Scorer] = {}  # one instance (one loaded model) per filter for the whole run
    columns: set[str] = set()
    for info in infos:
        result.shards += 1
        path = store.shard_path(info.index)
        names = set(storage.read_schema(path).names)
        todo = [c for c in runnable if not all(col.name in names for col in c.columns)]
        if not todo:
            columns |= names
            continue
        table = storage.read_table(path)
        scorers = [built.setdefault(c.name, build(c, cfg)) for c in todo]
        images = table.column("image").to_pylist()
        captions = table.column("caption").to_pylist() if "caption" in names else [None] * table.num_rows
        batch = SampleBatch(
            ids=table.column("id").to_pylist(),
            images=images,
            captions=captions,
            decoded=[decode(img, view, cfg.limits) for img in images],
            uris=table.column("uri").to_pylist() if "uri" in names else [],
            tasks=table.column("task").to_pylist() if "task" in names else [],
            source_images=table.column("source_image").to_pylist() if "source_image" in names else [],
            view_short_side=view,
        )
        added: dict[str, pa.Array] = {}
        for scorer in scorers:
            if isinstance(scorer, CpuScorer):
                added.update(scorer.to_arrays(scorer(batch)))
            elif isinstance(scorer, ModelScorer):
                added.update(_score_model(scorer, batch.decoded, captions, images, _batch_size(cfg, scorer), log))
        followers = [s for s in scorers if isinstance(s, EmbeddingScorer)]
        if followers:
            stored = table.column("image_embedding") if "image_embedding" in names else None
            source = added.get("image_embedding", stored)
            if source is None:  # check_models guarantees the embedding filter runs with its followers
                raise MissingInput(f"shard {info.index}: no image_embedding to score {[s.name for s in followers]}")
            added.update(score_embeddings(followers, source.to_pylist(), captions))
        for name, array in added.items():
            if name in table.column_names:  # a partial earlier run: replace, never duplicate
                table = table.drop_columns([name])
            table = table.append_column(pa.field(name, array.type, nullable=True), array)
        for scorer in scorers:
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


def _batch_size(cfg: ScoringConfig, scorer: ModelScorer) -> int:
    section = getattr(cfg, scorer.config_section, None) if scorer.config_section else None
    return int(getattr(section, "batch_size", 32))


def _score_model(
    scorer: ModelScorer,
    decoded: Sequence[Decoded],
    captions: Sequence[str | None],
    images: Sequence[bytes | None],
    batch_size: int,
    log: Callable[[str], None],
) -> dict[str, pa.Array]:
    """One model scorer over one shard in this process: prepare each decoded view, score in batches.

    Rows that did not decode get null, as in `flywheel score`; a row whose input fails to prepare gets null
    too and is reported (score-missing adds columns, it does not re-judge rows as broken).
    """
    scorer.load()
    inputs: list[np.ndarray | None] = [None] * len(decoded)
    failed: list[str] = []
    for i, d in enumerate(decoded):
        if d.ok:
            try:
                inputs[i] = scorer.prepare(d).astype(scorer.input_dtype)
            except Exception as exc:  # reported below, never silently null
                failed.append(f"row {i}: {type(exc).__name__}: {exc}")
    if failed:
        log(f"[warning] {scorer.name}: {len(failed)} row(s) could not be prepared, left null: {failed[:3]}")
    results = score_model_rows(scorer, inputs, captions, images, batch_size)
    return scorer.to_arrays(results)
