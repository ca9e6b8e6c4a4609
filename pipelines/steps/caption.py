"""The caption step on Ray Data: curated shards in, a captioned version of them out, resumably.

Layout: `WORKSPACE/captioned/<recipe>/part-NNNNN.parquet` (+ `_markers/`, `_manifest.json`):
every curated column unchanged plus the caption columns of `captioners.columns`. It is a
sibling of `curated/<recipe>/`, not inside it, because `flywheel select` swaps the curated
folder whole; a re-selection then shows up here as a changed fingerprint and only the
shards whose curated input changed are captioned again.

One task per curated shard reads it; caption actors (models load once per actor; one GPU
each when there is one; OCR-only runs use one actor per CPU; the endpoint backend sends its
requests concurrently from inside the actor) add the columns; writer tasks write each shard
atomically with a completion marker (`pipelines/steps/shard_writer.py`: the batches of one shard
become pieces that a task merges), so the driver only plans and counts. A shard
is complete only with its marker, so a re-run skips it; endpoint answers are also cached
per request, so even a shard interrupted midway never re-sends a finished request.
"""

from __future__ import annotations

import hashlib
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from captioners.captioner import Captioner
from captioners.columns import CAPTION_COLUMNS, CAPTION_TYPES, caption_schema
from captioners.config import CaptionConfig
from captioners.types import needs_ocr
from flywheel.errors import RunFailed, UserError
from flywheel.store import fs as storage
from flywheel.store.images import attach_bytes, bytes_source, reference_form
from flywheel.store.shards import ShardStore, StaleShardError, write_json_atomic
from flywheel.workspace import Workspace, WorkspaceError
from pipelines.ray_runtime import init_ray
from pipelines.steps.caption_summary import summarize
from pipelines.steps.shard_writer import Collected, ShardJob, collect, one_cpu, write_stage

SHARD = "_caption_shard"
EXPECTED = "_caption_expected"

ProgressFn = Callable[[int, int], None]
LogFn = Callable[[str], None]


class CaptionFailed(RunFailed):
    """Some shards could not be captioned; completed ones are kept and a re-run redoes only the rest."""


@dataclass
class CaptionResult:
    out_dir: Path
    shards: int = 0
    written: int = 0
    skipped: int = 0
    rows_written: int = 0
    seconds: float = 0.0
    failed: list[int] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    driver_bytes: int = 0  # what the driver received from the writer tasks: summaries, never rows
    merged_pieces: int = 0  # shards that arrived in several caption batches and were merged by a task


def captioned_dir(ws: Workspace, recipe: str) -> Path:
    return ws.captioned_dir(recipe)


def fingerprint(curated_sha256: str, kinds: tuple[str, ...], cfg: CaptionConfig) -> str:
    """Changes when the curated shard, the requested types or any caption setting changes."""
    payload = json.dumps({"shard": curated_sha256, "kinds": kinds, "cfg": asdict(cfg)}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


class CaptionStage:
    """Ray Data actor: holds one Captioner (its models) and captions pyarrow batches."""

    def __init__(self, cfg: CaptionConfig, kinds: tuple[str, ...], cache_dir: str) -> None:
        self.captioner = Captioner(cfg, kinds, cache_dir)

    def __call__(self, batch: pa.Table) -> pa.Table:
        images = batch.column("image").to_pylist()
        raw = batch.column("caption").to_pylist() if "caption" in batch.column_names else [None] * batch.num_rows
        produced = self.captioner(images, raw)
        for col in CAPTION_COLUMNS:
            batch = batch.append_column(col.name, pa.array(produced[col.name], type=col.dtype))
        return batch


def read_shard(row: dict[str, Any]) -> pa.Table:
    """Ray Data task: one curated shard as a table, tagged with its index and expected row count."""
    path, index = str(row["path"][0]), int(row["index"][0])
    # the captioners need the pixels the pool holds
    table = attach_bytes(storage.read_table(path), storage.storage_path(path))
    table = table.append_column(SHARD, pa.array([index] * table.num_rows, pa.int32()))
    return table.append_column(EXPECTED, pa.array([table.num_rows] * table.num_rows, pa.int64()))


def caption(
    ws: Workspace,
    recipe: str,
    kinds: tuple[str, ...],
    cfg: CaptionConfig,
    *,
    ray_address: str | None = None,
    progress: ProgressFn | None = None,
    log: LogFn | None = None,
) -> CaptionResult:
    """Caption the curated shards of `recipe` into WORKSPACE/captioned/<recipe>/ (resumable)."""
    started = time.perf_counter()
    unknown = [k for k in kinds if k not in CAPTION_TYPES]
    if unknown or not kinds:
        raise UserError(f"unknown caption type(s) {unknown}; known: {', '.join(CAPTION_TYPES)}")
    curated = ws.curated_store(recipe)
    infos = list(curated.infos())
    if not infos:
        raise WorkspaceError(
            f"no curated shards for recipe {recipe!r} in {ws.root}: run "
            f"`flywheel select --workspace {ws.root} --recipe {recipe}` first"
        )
    out = ShardStore(captioned_dir(ws, recipe))
    out.clean_temporaries()
    result = CaptionResult(out_dir=out.root, shards=len(infos))
    pending: list[dict[str, Any]] = []
    prints: dict[int, str] = {}
    for info in infos:
        fp = fingerprint(info.sha256, kinds, cfg)
        prints[info.index] = fp
        try:
            done = out.completed(info.index, fp)
        except StaleShardError:
            done = None
            if log:
                log(f"{info.shard}: curated input or caption config changed since it was captioned; redoing it")
        if done is not None:
            result.skipped += 1
        elif info.rows == 0:
            schema = _out_schema(storage.read_schema(curated.root / info.shard))
            out.write(info.index, schema.empty_table(), fp)
            result.written += 1
        else:
            pending.append({"path": str(curated.root / info.shard), "index": info.index, "rows": info.rows})
    if progress:
        progress(result.skipped + result.written, result.shards)
    if pending:
        _run(pending, out, prints, kinds, cfg, ws, ray_address, result, progress)
    result.seconds = time.perf_counter() - started
    result.summary = summarize(out.shard_paths(), kinds)
    out.write_manifest({"recipe": recipe, "kinds": list(kinds), "summary": result.summary})
    write_json_atomic(
        ws.runs_dir / f"{time.strftime('%Y%m%dT%H%M%S')}-caption.json",
        {
            "command": "caption",
            "recipe": recipe,
            **{k: v for k, v in asdict(result).items() if k != "out_dir"},
            "out_dir": str(out.root),
        },
    )
    if result.failed:
        raise CaptionFailed(
            f"{len(result.failed)} shard(s) failed ({result.failed[:10]}); re-run the same command "
            "to retry them (completed shards are kept)"
        )
    return result


def _out_schema(curated: pa.Schema) -> pa.Schema:
    fields = [f for f in curated if f.name not in caption_schema().names]
    return pa.schema(fields + list(caption_schema()))


def _actors(cfg: CaptionConfig, kinds: tuple[str, ...]) -> tuple[int, float]:
    """(actor count, GPUs per actor): a model copy per GPU; OCR fans out over CPUs; endpoints need one."""
    import ray

    backends = {cfg.backend_for(k) for k in kinds}
    cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
    if "transformers" in backends:
        gpu = 1.0 if _cuda_available() else 0.0
        return max(1, cfg.transformers.actors), gpu
    if "ocr" in backends or needs_ocr(kinds):
        return max(1, cpus // max(1, cfg.ocr.threads)), 0.0  # each actor runs ocr.threads tesseracts
    return 1, 0.0


def _run(
    pending: list[dict[str, Any]],
    out: ShardStore,
    prints: dict[int, str],
    kinds: tuple[str, ...],
    cfg: CaptionConfig,
    ws: Workspace,
    ray_address: str | None,
    result: CaptionResult,
    progress: ProgressFn | None,
) -> None:
    import ray

    init_ray(ray_address)
    ray.data.DataContext.get_current().max_errored_blocks = -1  # a failing shard must not stop the others
    actors, gpus = _actors(cfg, kinds)
    cache_dir = str(ws.cache_dir("openai"))
    ds = ray.data.from_items(pending, override_num_blocks=len(pending))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = ds.map_batches(
            read_shard,
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(),
            ray_remote_args_fn=one_cpu,
        )
        ds = ds.map_batches(
            CaptionStage,
            fn_constructor_args=(cfg, kinds, cache_dir),
            batch_format="pyarrow",
            batch_size=cfg.batch_size,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=actors),
            num_gpus=gpus,
            num_cpus=0 if gpus else 1,
            max_restarts=0,
        )
        job = CaptionShards(
            root=str(out.root),
            key=SHARD,
            expected=EXPECTED,
            fingerprints=prints,
            sources={p["index"]: _str_or_none(bytes_source(storage.storage_path(p["path"]))) for p in pending},
        )
        ds = write_stage(ds, job)
    left = {p["index"] for p in pending}
    collected = Collected()
    for done in collect(ds, job, collected):  # the workers wrote the shards; only summaries come here
        left.discard(done.shard)
        result.written += 1
        result.rows_written += done.rows
        if progress:
            progress(result.written + result.skipped, result.shards)
    result.failed = sorted(left)
    result.driver_bytes, result.merged_pieces = collected.bytes_received, collected.merged


@dataclass
class CaptionShards(ShardJob):
    """Captioned shards as stored: curated columns plus the caption columns, bytes referenced from the pool."""

    sources: dict[int, str | None] = field(default_factory=dict)

    def finish(self, index: int, table: pa.Table) -> pa.Table:
        table = table.drop_columns([SHARD, EXPECTED])
        table = table.select(_out_schema(table.schema).names).cast(_out_schema(table.schema))
        source = self.sources.get(index)
        if source is not None:  # captioned rows reference the pool's bytes, as curated ones do
            table = reference_form(table, np.zeros(0), storage.storage_path(source), storage.storage_path(self.root))
        return table


def _str_or_none(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _cuda_available() -> bool:
    import torch

    return bool(torch.cuda.is_available())
