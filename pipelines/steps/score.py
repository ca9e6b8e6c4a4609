"""`flywheel score`: ingest a source and write the scored pool, resumably, on Ray Data.

The driver plans partitions, skips those whose shard is already complete, and streams the
rest through Ray Data (CPU task per partition, then one actor pool per model scorer; with CPU
filters only, one task per partition scores it and writes its shard). Rows
come back to the driver, which assembles each partition and writes its shard atomically
once every row of it has arrived. The driver is the only writer of the pool, so markers and
the manifest need no locking; memory is bounded by the partitions in flight, not the pool.
"""

from __future__ import annotations

import math
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from filters.base import Counters, EmbeddingScorer, ModelConfigError, ModelScorer, Scorer, ScorerUnavailable
from filters.config import ScoringConfig
from filters.embedding import ImageEmbeddingScorer
from filters.registry import build, column_owners, column_registry, is_model, resolve, scoring_fingerprint
from flywheel.errors import RunFailed, UserError
from flywheel.ingest import open_source
from flywheel.ingest.base import PartitionSpec, SourceError
from flywheel.store.shards import write_json_atomic
from flywheel.workspace import Workspace, WorkspaceError
from pipelines.ray_runtime import init_ray
from pipelines.steps.score_stages import (
    EXPECTED,
    ModelStage,
    ScoreShards,
    score_and_write,
    score_partitions,
    spec_to_row,
)
from pipelines.steps.shard_writer import Collected, collect, one_cpu, write_stage

ProgressFn = Callable[[int, int], None]  # (shards complete, shards in the plan)

DEFAULT_ROWS_PER_PARTITION = 256
# A source that fits in fewer partitions than this at the default size is split into this many, so that a
# small source keeps several cores busy (a 200-file folder was one partition, so one task on one core). A
# fixed count rather than the core count: the plan, and the shard numbering a resume relies on, must be
# the same on every machine that runs or resumes the job.
MIN_PARTITIONS = 8


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
    captions_missing: int = 0  # rows written in this run whose caption is null
    # Bytes of the summaries the driver received from the writer tasks (the shards are written by workers):
    # flat in the input size, which bench/score_memory.py measures.
    driver_bytes: int = 0
    merged_pieces: int = 0  # partitions Ray split across blocks, merged from piece files by a task

    @property
    def ok(self) -> bool:
        return not self.failed


class ScoreFailed(RunFailed):
    """Some partitions did not complete; re-running scores only those."""


@dataclass
class _Pending:
    spec: PartitionSpec
    index: int


def plan(
    source_path: str,
    workspace: Workspace,
    rows_per_partition: int | None,
    scoring: str | None = None,
    log: Callable[[str], None] = print,
) -> tuple[list[_Pending], int]:
    """Partitions of the source still to score, and how many are already complete.

    The planned row count of every partition is recorded with the source, so `select` can
    tell a finished pool from one that lost partitions. A shard whose bytes no longer match
    its recorded size/sha256 is not complete: it is named in the log and scored again.
    With `scoring` (the filter set + model config fingerprint), shards scored under another one count as
    not complete, so fixing a config and re-running re-scores them.
    `rows_per_partition=None` is the default size, with small sources split into `MIN_PARTITIONS`.
    """
    source = open_source(source_path)
    specs = source.plan(rows_per_partition or DEFAULT_ROWS_PER_PARTITION)
    if not specs:  # a wrong folder must not "score 0 rows" with exit 0 (a scheduled job would look healthy)
        raise SourceError(f"{source_path}: no samples found in this {source.kind} source; is it the right path?")
    legacy: list[PartitionSpec] | None = None
    if rows_per_partition is None and (small := small_source_rows(specs)) is not None:
        legacy, specs = specs, source.plan(small)
    key = f"{source.kind}:{Path(source.root).resolve()}"
    try:
        offset = workspace.source_offset(key, len(specs), [spec.stop - spec.start for spec in specs])
    except WorkspaceError:
        if legacy is None:
            raise
        # Registered before small sources were split: that workspace keeps its default-size plan.
        specs = legacy
        offset = workspace.source_offset(key, len(specs), [spec.stop - spec.start for spec in specs])
    pending, skipped = [], 0
    store = workspace.pool
    for spec in specs:
        index = offset + spec.local_index
        if store.completed(index, spec.fingerprint, scoring) is not None:
            skipped += 1
        else:
            if index in store.damaged:
                log(f"[warning] {store.damaged[index]}; scoring it again")
            pending.append(_Pending(spec=spec, index=index))
    return pending, skipped


def score(
    source_path: str,
    workspace: Workspace,
    *,
    filters: Sequence[str] | None = None,
    cfg: ScoringConfig | None = None,
    ray_address: str | None = None,
    rows_per_partition: int | None = None,
    model_actors: int = 1,
    progress: ProgressFn | None = None,
    log: Callable[[str], None] = print,
) -> ScoreResult:
    cfg = cfg or ScoringConfig()
    started = time.perf_counter()
    classes = resolve(filters)
    registry = column_registry(classes)
    pool_schema = registry.schema()
    workspace.check_schema()
    notices: list[str] = []  # model warnings wait until the source is planned: a wrong path is the one line
    model_classes, followers, unavailable = check_models(classes, cfg, notices.append)
    cpu_classes = [c for c in classes if not is_model(c)]
    scoring = scoring_fingerprint(classes, cfg)
    workspace.pool_dir.mkdir(parents=True, exist_ok=True)
    workspace.pool.clean_temporaries()
    pending, skipped = plan(source_path, workspace, rows_per_partition, scoring, log)
    for notice in notices:
        log(notice)
    if not workspace.pool.manifest_path.is_file():  # stamp the schema version before the first shard
        workspace.pool.write_manifest({"columns": [c.name for c in registry], "source": source_path})
    total = len(pending) + skipped
    if progress:
        progress(skipped, total)

    result = ScoreResult(
        partitions=total, skipped=skipped, written=0, failed=[], rows_written=0, seconds=0.0, unavailable=unavailable
    )
    if pending:
        _run(
            pending,
            workspace,
            cpu_classes,
            model_classes,
            followers,
            cfg,
            pool_schema,
            ray_address,
            model_actors,
            result,
            progress,
            scoring,
        )
    result.seconds = time.perf_counter() - started
    if result.rows_written and result.captions_missing == result.rows_written:
        log(f"[warning] {no_captions_message(source_path, result.rows_written)}")
    workspace.pool.write_manifest(
        {
            "columns": [c.name for c in registry],
            "caption_columns": [c.name for c in registry if c.from_caption],
            # every column a registered filter can write: select tells "filter not run" from a typo with it
            "known_columns": column_owners(),
            "source": source_path,
        }
    )
    _write_run_log(workspace, source_path, result)
    if result.failed:
        raise ScoreFailed(
            f"{len(result.failed)} partition(s) failed: {result.failed[:10]}; "
            "re-run the same command to retry them (completed shards are kept)"
        )
    return result


def small_source_rows(specs: Sequence[PartitionSpec]) -> int | None:
    """Rows per partition that split a small source into `MIN_PARTITIONS`; None when it needs no split."""
    total = sum(spec.stop - spec.start for spec in specs)
    if len(specs) >= MIN_PARTITIONS or total <= len(specs):
        return None
    return max(1, math.ceil(total / MIN_PARTITIONS))


def check_models(
    classes: Sequence[type[Scorer]], cfg: ScoringConfig, log: Callable[[str], None]
) -> tuple[list[type[ModelScorer]], list[type[EmbeddingScorer]], dict[str, str]]:
    """Build every enabled scorer once on the driver, before anything is planned or written.

    A configured (or shipped) model that cannot load is a ModelConfigError, not null columns: shards
    written without it would be skipped on every re-run. Only a model that is not configured at all
    (CLIP without weights) is the documented null, reported as a warning.
    Returns the model scorers that run, the embedding scorers that run on the shared embedding pass (in the
    `embedding` filter's actors), and the messages of those that do not run.
    """
    model_classes: list[type[ModelScorer]] = []
    followers: list[type[EmbeddingScorer]] = []
    unavailable: dict[str, str] = {}
    for cls in classes:
        try:
            scorer = build(cls, cfg)
        except ScorerUnavailable as exc:
            raise ModelConfigError(f"filter {cls.name} cannot run: {exc}") from None
        if isinstance(scorer, EmbeddingScorer):
            if getattr(scorer, "needs_pixels", False):
                # Said out loud, not a silent null: a pixel path (LAION over CLIP) has no pipeline stage yet.
                unavailable[cls.name] = (
                    f"filter {cls.name} is configured to embed pixels with its own CLIP model, which "
                    "`flywheel score` does not run yet: its columns stay null (unset the CLIP keys to use the "
                    "shared embedding)"
                )
                log(f"[warning] {unavailable[cls.name]}")
                continue
            message = scorer.available()
            if message is not None:
                raise ModelConfigError(f"filter {cls.name} cannot run: {message}")
            followers.append(cls)  # type: ignore[arg-type]
            continue
        if not isinstance(scorer, ModelScorer):
            continue
        message = scorer.available()
        if message is None:
            model_classes.append(cls)  # type: ignore[arg-type]
        elif scorer.not_configured():
            unavailable[cls.name] = message
            log(f"[warning] {message}")
        else:
            raise ModelConfigError(
                f"filter {cls.name} cannot run: {message} (fix the scoring config, or leave the filter out "
                "with --filters)"
            )
    if followers and ImageEmbeddingScorer not in model_classes:
        raise ModelConfigError(
            f"filter(s) {[c.name for c in followers]} read the shared image embedding: enable the "
            f"{ImageEmbeddingScorer.name!r} filter too"
        )
    return model_classes, followers, unavailable


def _run(
    pending: list[_Pending],
    workspace: Workspace,
    cpu_classes: list[type[Scorer]],
    model_classes: list[type[ModelScorer]],
    followers: list[type[EmbeddingScorer]],
    cfg: ScoringConfig,
    pool_schema: pa.Schema,
    ray_address: str | None,
    model_actors: int,
    result: ScoreResult,
    progress: ProgressFn | None,
    scoring: str,
) -> None:
    import ray

    init_ray(ray_address)
    ctx = ray.data.DataContext.get_current()
    ctx.max_errored_blocks = -1  # a failing partition must not stop the others; it is retried next run
    # A partition stays one block from its decode task to its writer (no splitting of large blocks), so the
    # worker holding it can write it whole; a split one still completes, through piece files (write_partitions).
    ctx.target_max_block_size = None
    by_index = {p.index: p for p in pending}
    ds = ray.data.from_items([spec_to_row(p.spec, p.index) for p in pending], override_num_blocks=len(pending))
    # Ray 2.60 deprecates `ray_remote_args_fn` and remote args such as `max_restarts` passed to map_batches,
    # with no named replacement for either use here yet; the deprecation is silenced for these two calls only
    # (it is Ray's API churn, not something a user can act on). Revisit when Ray 2.64 removes them.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        job = ScoreShards(
            root=str(workspace.pool_dir),
            key="partition",
            expected=EXPECTED,
            fingerprints={p.index: p.spec.fingerprint for p in pending},
            scoring=scoring,
            schema=pool_schema,
        )
        if model_classes:
            ds = write_stage(_stages(ds, cpu_classes, model_classes, followers, cfg, model_actors), job)
        else:  # CPU filters only: each task scores its partition and writes the shard (see score_and_write)
            ds = _per_partition(ds, score_and_write, (cpu_classes, cfg, job))
    counters: dict[str, Counters] = defaultdict(Counters)
    collected = Collected()
    # Only summaries reach the driver: the workers wrote the shards (no image byte comes here).
    for done in collect(ds, job, collected):
        for stats in done.stats:
            for name, values in stats.get("counters", {}).items():
                counters[name].merge(Counters(**values))
            result.captions_missing += stats.get("captions_missing", 0)
        result.written += 1
        result.rows_written += done.rows
        del by_index[done.shard]
        if progress:
            progress(result.written + result.skipped, result.partitions)
    result.driver_bytes = collected.bytes_received
    result.merged_pieces = collected.merged
    result.failed = sorted(by_index)
    result.counters = {k: vars(v) for k, v in counters.items()}


def _per_partition(ds: Any, fn: Callable[..., Any], fn_args: tuple[Any, ...]) -> Any:
    """One Ray task per partition running `fn` (a partition per batch, one CPU each).

    ray_remote_args_fn keeps Ray Data from fusing these tasks into the (few) model actors downstream:
    decoding must fan out over every CPU, while models load once per actor.
    """
    import ray

    return ds.map_batches(
        fn,
        fn_args=fn_args,
        batch_size=1,
        batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(),
        ray_remote_args_fn=one_cpu,
    )


def no_captions_message(source: str, rows: int) -> str:
    """The warning for a source none of whose rows has a caption (every caption rule would reject them all)."""
    return (
        f"none of the {rows} rows scored from {source} has a caption (no .txt/.json sidecar or caption field): "
        "caption_issue is 'missing' for every row and caption rules have nothing to judge; "
        "add captions or run `flywheel caption` before selecting"
    )


def _stages(
    ds: Any,
    cpu_classes: list[type[Scorer]],
    model_classes: list[type[ModelScorer]],
    followers: list[type[EmbeddingScorer]],
    cfg: ScoringConfig,
    model_actors: int,
) -> Any:
    """The decode task stage, then one actor-pool stage per model scorer.

    The embedding scorers (`followers`) run inside the `embedding` filter's actors on the batch it just
    embedded: one network pass serves them all, and no embedding travels between stages.
    """
    import ray

    ds = _per_partition(ds, score_partitions, (cpu_classes, model_classes, cfg))
    resources = model_resources(model_classes, cfg, _cuda_available())
    for cls in model_classes:
        cpus, gpus = resources[cls.name]
        ds = ds.map_batches(
            ModelStage,
            fn_constructor_args=(cls, cfg, 1, followers if cls is ImageEmbeddingScorer else ()),
            batch_format="pyarrow",
            # One call per decoded partition (the actor batches its model calls itself): a fixed row count
            # here made Ray Data hold partitions until that many rows had arrived, so no shard completed
            # (and the progress bar stayed at 0/N) until the end of a small run.
            batch_size=None,
            compute=ray.data.ActorPoolStrategy(min_size=1, max_size=model_actors),
            num_gpus=gpus,
            num_cpus=cpus,
            max_restarts=0,
        )  # a lost actor fails its partitions; the next run redoes them
    return ds


def model_resources(
    model_classes: Sequence[type[ModelScorer]], cfg: ScoringConfig, cuda: bool
) -> dict[str, tuple[float, float]]:
    """(CPUs, GPUs) each model scorer's actors reserve.

    On CPU the model actors together reserve one CPU: with one whole CPU each, two model scorers on a 2-core
    machine would hold every CPU and leave the decode tasks none (a deadlock, seen with nsfw + rotation_net).
    On a GPU each takes `runtime.gpu_share` of a device (default 1/n of one GPU for n GPU scorers), so several
    share one device; a GPU actor reserves no CPU.
    """
    gpu_classes = [c for c in model_classes if c.uses_gpu] if cuda else []
    share = float(cfg.runtime.gpu_share) if cfg.runtime.gpu_share is not None else 1.0 / max(1, len(gpu_classes))
    if not (0 < share <= 1 or (share > 1 and share.is_integer())):
        raise UserError(f"runtime.gpu_share must be in (0, 1] or a whole number of GPUs, got {share}")
    cpu_classes = [c for c in model_classes if c not in gpu_classes]
    cpu_share = 1.0 / max(1, len(cpu_classes))
    return {c.name: (0.0, share) if c in gpu_classes else (cpu_share, 0.0) for c in model_classes}


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
