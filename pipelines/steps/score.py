"""`flywheel score`: ingest a source and write the scored pool, resumably, on Ray Data.

The driver plans partitions, skips those whose shard is already complete, and streams the
rest through Ray Data (CPU task per partition, then one actor pool per model scorer). Rows
come back to the driver, which assembles each partition and writes its shard atomically
once every row of it has arrived. The driver is the only writer of the pool, so markers and
the manifest need no locking; memory is bounded by the partitions in flight, not the pool.
"""

from __future__ import annotations

import json
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from filters.base import Counters, ModelScorer, Scorer
from filters.config import ScoringConfig
from filters.registry import build, column_registry, is_model, resolve
from flywheel.errors import RunFailed
from flywheel.ingest import open_source
from flywheel.ingest.base import PartitionSpec, SourceError
from flywheel.store.shards import write_json_atomic
from flywheel.workspace import Workspace
from pipelines.ray_runtime import init_ray
from pipelines.steps.score_stages import COUNTERS, EXPECTED, ModelStage, score_partitions, spec_to_row

ProgressFn = Callable[[int, int], None]  # (shards complete, shards in the plan)


@dataclass
class ScoreResult:
    partitions: int
    skipped: int
    written: int
    failed: list[int]
    rows_written: int
    seconds: float
    unavailable: dict[str, str] = field(default_factory=dict)
    counters: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


class ScoreFailed(RunFailed):
    """Some partitions did not complete; re-running scores only those."""


@dataclass
class _Pending:
    spec: PartitionSpec
    index: int
    tables: list[pa.Table] = field(default_factory=list)
    rows: int = 0


def plan(source_path: str, workspace: Workspace, rows_per_partition: int) -> tuple[list[_Pending], int]:
    """Partitions of the source still to score, and how many are already complete."""
    source = open_source(source_path)
    specs = source.plan(rows_per_partition)
    if not specs:  # a wrong folder must not "score 0 rows" with exit 0 (a scheduled job would look healthy)
        raise SourceError(f"{source_path}: no samples found in this {source.kind} source; is it the right path?")
    offset = workspace.source_offset(f"{source.kind}:{Path(source.root).resolve()}", len(specs))
    pending, skipped = [], 0
    for spec in specs:
        index = offset + spec.local_index
        if workspace.pool.completed(index, spec.fingerprint) is not None:
            skipped += 1
        else:
            pending.append(_Pending(spec=spec, index=index))
    return pending, skipped


def score(
    source_path: str,
    workspace: Workspace,
    *,
    filters: Sequence[str] | None = None,
    cfg: ScoringConfig | None = None,
    ray_address: str | None = None,
    rows_per_partition: int = 256,
    model_actors: int = 1,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = print,
) -> ScoreResult:
    cfg = cfg or ScoringConfig()
    started = time.perf_counter()
    classes = resolve(filters)
    registry = column_registry(classes)
    pool_schema = registry.schema()
    workspace.pool_dir.mkdir(parents=True, exist_ok=True)
    workspace.pool.clean_temporaries()
    pending, skipped = plan(source_path, workspace, rows_per_partition)
    total = len(pending) + skipped
    if progress:
        progress(skipped, total)

    model_classes: list[type[ModelScorer]] = []
    unavailable: dict[str, str] = {}
    for cls in classes:
        if is_model(cls):
            message = build(cls, cfg).available()  # type: ignore[attr-defined]
            if message:
                unavailable[cls.name] = message
                log(f"[warning] {message}")
            else:
                model_classes.append(cls)  # type: ignore[arg-type]
    cpu_classes = [c for c in classes if not is_model(c)]

    result = ScoreResult(
        partitions=total, skipped=skipped, written=0, failed=[], rows_written=0, seconds=0.0, unavailable=unavailable
    )
    if pending:
        _run(
            pending,
            workspace,
            cpu_classes,
            model_classes,
            cfg,
            pool_schema,
            ray_address,
            model_actors,
            result,
            progress,
        )
    result.seconds = time.perf_counter() - started
    workspace.pool.write_manifest({"columns": [c.name for c in registry], "source": source_path})
    _write_run_log(workspace, source_path, result)
    if result.failed:
        raise ScoreFailed(
            f"{len(result.failed)} partition(s) failed: {result.failed[:10]}; "
            "re-run the same command to retry them (completed shards are kept)"
        )
    return result


def _run(
    pending: list[_Pending],
    workspace: Workspace,
    cpu_classes: list[type[Scorer]],
    model_classes: list[type[ModelScorer]],
    cfg: ScoringConfig,
    pool_schema: pa.Schema,
    ray_address: str | None,
    model_actors: int,
    result: ScoreResult,
    progress: ProgressFn | None,
) -> None:
    import ray

    init_ray(ray_address)
    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = -1  # a failing partition must not stop the others; it is retried next run
    by_index = {p.index: p for p in pending}
    ds = ray.data.from_items([spec_to_row(p.spec, p.index) for p in pending], override_num_blocks=len(pending))
    # ray_remote_args_fn keeps Ray Data from fusing the decode tasks into the (few) model actors:
    # decoding must fan out over every CPU, while models load once per actor.
    with warnings.catch_warnings():  # deprecated in Ray 2.60 without a replacement for this use yet
        warnings.simplefilter("ignore")
        ds = ds.map_batches(
            score_partitions,
            fn_args=(cpu_classes, model_classes, cfg),
            batch_size=1,
            batch_format="numpy",
            compute=ray.data.TaskPoolStrategy(),
            ray_remote_args_fn=_one_cpu,
        )
    # The model actors together reserve one CPU: with one whole CPU each, two model scorers on a 2-core
    # machine would hold every CPU and leave the decode tasks none (a deadlock, seen with nsfw + rotation_net).
    model_cpus = 1.0 / max(1, len(model_classes))
    for cls in model_classes:
        gpu = 1 if (cls.uses_gpu and _cuda_available()) else 0
        ds = ds.map_batches(
            ModelStage,
            fn_constructor_args=(cls, cfg),
            batch_format="pyarrow",
            batch_size=256,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=model_actors),
            num_gpus=gpu,
            num_cpus=0 if gpu else model_cpus,
            max_restarts=0,
        )  # a lost actor fails its partitions; the next run redoes them
    counters: dict[str, Counters] = defaultdict(Counters)
    for block in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
        for index in sorted(set(block.column("partition").to_pylist())):
            part = block.filter(pa.compute.equal(block.column("partition"), index))
            entry = by_index[index]
            expected = part.column(EXPECTED)[0].as_py()
            if expected == 0:
                part = part.slice(0, 0)
            entry.tables.append(part)
            entry.rows += part.num_rows
            if entry.rows == expected:
                table = pa.concat_tables(entry.tables)
                for raw in table.column(COUNTERS).drop_null().to_pylist():
                    for name, values in json.loads(raw).items():
                        counters[name].merge(Counters(**values))
                workspace.pool.write(index, _conform(table, pool_schema), entry.spec.fingerprint)
                result.written += 1
                result.rows_written += table.num_rows
                entry.tables = []
                del by_index[index]
                if progress:
                    progress(result.written + result.skipped, result.partitions)
    result.failed = sorted(by_index)
    result.counters = {k: vars(v) for k, v in counters.items()}


def _one_cpu() -> dict[str, Any]:
    return {"num_cpus": 1}


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Order columns as the registry declares them and drop pipeline-internal ones."""
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:  # a model scorer that could not run: its columns exist, and are null
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def _write_run_log(workspace: Workspace, source: str, result: ScoreResult) -> None:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    payload: dict[str, Any] = {"command": "score", "source": source, **vars(result)}
    write_json_atomic(workspace.runs_dir / f"{stamp}-score.json", payload)
