"""The two Ray Data stages of scoring: a CPU task per partition, an actor pool per model scorer.

CPU stage (`ScorePartition`): read one partition, decode every image once at the largest
view any enabled scorer needs, run the CPU scorers, and run each model scorer's cheap
`prepare` so that only a small fixed-size array per sample travels to the model actors.
Model stage (`ModelStage`): load the model once per actor, score stacked batches, and
replace the prepared input column by the score columns.
"""

from __future__ import annotations

import contextlib
import json
import signal
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from filters.base import Counters, CpuScorer, EmbeddingScorer, ModelScorer, SampleBatch, Scorer
from filters.config import ScoringConfig
from filters.registry import build, decode_short_side
from flywheel.errors import RunFailed
from flywheel.ids import content_hash, content_sha256, sample_id
from flywheel.imaging import READ_ERROR, SCORER_ERROR, Decoded, decode
from flywheel.ingest import read_partition
from flywheel.ingest.base import PartitionSpec
from flywheel.schema import CORE_COLUMNS
from pipelines.steps.shard_writer import ShardJob, write_blocks

EXPECTED = "_expected_rows"
COUNTERS = "_counters"


def input_column(scorer_name: str) -> str:
    return f"_in_{scorer_name}"


def spec_to_row(spec: PartitionSpec, index: int) -> dict[str, Any]:
    return {"index": index, "spec": json.dumps(asdict(spec))}


def spec_from_row(row: dict[str, Any]) -> tuple[int, PartitionSpec]:
    data = json.loads(row["spec"])
    data["files"] = tuple(data["files"])
    data["options"] = tuple(tuple(o) for o in data["options"])
    return int(row["index"]), PartitionSpec(**data)


class ScorePartition:
    """Callable for `map_batches(batch_size=1)`: one partition spec in, its scored rows out."""

    def __init__(
        self, cpu_classes: Sequence[type[Scorer]], model_classes: Sequence[type[Scorer]], cfg: ScoringConfig
    ) -> None:
        self.cfg = cfg
        self.cpu: list[CpuScorer] = [build(c, cfg) for c in cpu_classes]  # type: ignore[misc]
        self.model: list[ModelScorer] = [build(c, cfg) for c in model_classes]  # type: ignore[misc]
        # One decode serves every scorer, at a view fixed by the configuration (not by which filters are
        # enabled), so every column is the same whichever filters run. Header-only runs still decode:
        # only a full pass over the stream detects truncation.
        self.view_short_side = decode_short_side(cfg)

    def __call__(self, batch: dict[str, np.ndarray]) -> pa.Table:
        tables = [self.score_one(*spec_from_row({k: batch[k][i] for k in batch})) for i in range(len(batch["index"]))]
        return pa.concat_tables(tables) if len(tables) > 1 else tables[0]

    def score_one(self, index: int, spec: PartitionSpec) -> pa.Table:
        with partition_deadline(self.cfg.limits.partition_timeout_s, f"partition {index} ({spec.source})"):
            return self._score_one(index, spec)

    def _score_one(self, index: int, spec: PartitionSpec) -> pa.Table:
        samples = list(read_partition(spec))
        n = len(samples)
        images = [s.image for s in samples]
        decoded = [decode(img, self.view_short_side, self.cfg.limits) for img in images]
        for s, d in zip(samples, decoded, strict=True):
            # A read error (unreadable file, edit source missing or outside the root, refused special
            # file) rejects the row even when the target bytes decode: the sample is not what was listed.
            if s.read_error:
                d.broken_reason, d.broken_detail = READ_ERROR, s.read_error[:300]
                d.rgb = None
        batch = SampleBatch(
            ids=[sample_id(spec.kind, s.uri, s.source_uri) for s in samples],
            images=images,
            captions=[s.caption for s in samples],
            decoded=decoded,
            uris=[s.uri for s in samples],
            tasks=[s.task for s in samples],
            source_images=[s.source_image for s in samples],
            view_short_side=self.view_short_side,
        )
        columns: dict[str, pa.Array] = {
            "id": pa.array(batch.ids, pa.string()),
            "source": pa.array([spec.source] * n, pa.string()),
            "uri": pa.array(batch.uris, pa.string()),
            "partition": pa.array([index] * n, pa.int32()),
            "image": pa.array(images, pa.binary()),
            "file_bytes": pa.array([len(i) if i is not None else None for i in images], pa.int64()),
            "width": pa.array([d.width for d in decoded], pa.int32()),
            "height": pa.array([d.height for d in decoded], pa.int32()),
            "format": pa.array([d.format for d in decoded], pa.string()),
            "caption": pa.array(batch.captions, pa.string()),
            "task": pa.array(batch.tasks, pa.string()),
            "source_image": pa.array(batch.source_images, pa.binary()),
            "source_uri": pa.array([s.source_uri for s in samples], pa.string()),
            "meta": pa.array([s.meta_json() for s in samples], pa.string()),
            "content_hash": pa.array([content_hash(s.image, s.caption, s.source_image) for s in samples], pa.string()),
            "image_sha256": pa.array([content_sha256(i) for i in images], pa.string()),
        }
        assert list(columns) == [c.name for c in CORE_COLUMNS]
        counters: dict[str, Any] = {}
        failures: dict[int, list[str]] = {}  # sample -> scorers that raised on it
        for scorer in self.cpu:
            scorer.counters = Counters()  # per partition: the driver sums partitions, scorers outlive them
            out = _score_isolated(scorer, batch, failures) if n else scorer.empty_columns(0)
            columns.update(scorer.to_arrays(out))
            counters[scorer.name] = asdict(scorer.counters)
        for scorer in self.model:
            prepared = [_prepare(scorer, d, i, failures) for i, d in enumerate(decoded)]
            columns[input_column(scorer.name)] = pa.array(prepared, pa.binary())
        if failures and "broken_reason" in columns:
            _mark_scorer_errors(columns, failures)
        columns[EXPECTED] = pa.array([n] * n, pa.int32())
        columns[COUNTERS] = pa.array([json.dumps(counters)] + [None] * (n - 1) if n else [], pa.string())
        table = pa.table(columns)
        if n == 0:  # an empty partition still has to complete: carry one marker row the driver drops
            table = _empty_partition_row(index, table.schema)
        return table


def _one(batch: SampleBatch, i: int) -> SampleBatch:
    return SampleBatch(
        ids=[batch.ids[i]],
        images=[batch.images[i]],
        captions=[batch.captions[i]],
        decoded=[batch.decoded[i]],
        uris=[batch.uris[i]] if batch.uris else [],
        tasks=[batch.tasks[i]] if batch.tasks else [],
        source_images=[batch.source_images[i]] if batch.source_images else [],
        view_short_side=batch.view_short_side,
    )


def _score_isolated(scorer: CpuScorer, batch: SampleBatch, failures: dict[int, list[str]]) -> dict[str, Any]:
    """Score the batch; if the scorer raises, score sample by sample so only the samples it fails on lose.

    Those samples get null columns from this scorer and are recorded in `failures` (they are then
    rejected as broken with the scorer's message), so one sample can never fail its partition.
    """
    try:
        return dict(scorer(batch))
    except Exception:  # isolated below; the error of each failing sample is kept
        pass
    out: dict[str, list[Any]] = {c.name: [None] * len(batch) for c in scorer.columns}
    for i in range(len(batch)):
        try:
            one = scorer(_one(batch, i))
        except Exception as exc:
            failures.setdefault(i, []).append(f"{scorer.name} scorer failed: {type(exc).__name__}: {exc}")
            continue
        for name, values in one.items():
            out[name][i] = values.tolist()[0] if isinstance(values, np.ndarray) else next(iter(values))
    return out


def _prepare(scorer: ModelScorer, decoded: Decoded, i: int, failures: dict[int, list[str]]) -> bytes | None:
    if not decoded.ok:
        return None
    try:
        return scorer.prepare(decoded).astype(scorer.input_dtype).tobytes()
    except Exception as exc:
        failures.setdefault(i, []).append(f"{scorer.name} input failed: {type(exc).__name__}: {exc}")
        return None


def _mark_scorer_errors(columns: dict[str, pa.Array], failures: dict[int, list[str]]) -> None:
    """Reject samples a scorer raised on, with its message (never silently null)."""
    reasons, details = columns["broken_reason"].to_pylist(), columns["broken_detail"].to_pylist()
    for i, messages in failures.items():
        if reasons[i] is None:
            reasons[i], details[i] = SCORER_ERROR, "; ".join(messages)[:300]
    columns["broken_reason"] = pa.array(reasons, pa.string())
    columns["broken_detail"] = pa.array(details, pa.string())


class PartitionTimeout(RunFailed):
    """A partition ran past limits.partition_timeout_s; it fails alone and is retried next run."""


class _Expired(BaseException):
    """Raised by the alarm; a BaseException so per-sample `except Exception` nets (decode) cannot swallow it."""


@contextlib.contextmanager
def partition_deadline(seconds: float, what: str) -> Iterator[None]:
    """Raise PartitionTimeout in the block after `seconds` (SIGALRM; only armed in a main thread).

    Interrupts blocking reads too (the handler raises, so the syscall is not restarted). Off when
    `seconds` <= 0 or where signals cannot be used; reads are size-bounded regardless.
    """
    usable = seconds > 0 and hasattr(signal, "setitimer") and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return

    def _expired(signum: int, frame: object) -> None:
        raise _Expired

    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except _Expired:
        raise PartitionTimeout(f"{what} ran longer than limits.partition_timeout_s={seconds:g}s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def score_partitions(
    batch: dict[str, np.ndarray],
    cpu_classes: Sequence[type[Scorer]],
    model_classes: Sequence[type[Scorer]],
    cfg: ScoringConfig,
) -> pa.Table:
    """Task-pool entry point (Ray Data runs callable classes only as actors).

    Ray reuses task worker processes, so the scorers (tokenizer, rotation weights) are built once per worker
    and configuration instead of once per partition.
    """
    key = (tuple(c.name for c in cpu_classes), tuple(c.name for c in model_classes), repr(cfg))
    stage = _STAGES.get(key)
    if stage is None:
        stage = _STAGES[key] = ScorePartition(cpu_classes, model_classes, cfg)
    return stage(batch)


_STAGES: dict[tuple[Any, ...], ScorePartition] = {}


def score_and_write(
    batch: dict[str, np.ndarray], cpu_classes: Sequence[type[Scorer]], cfg: ScoringConfig, job: ShardJob
) -> pa.Table:
    """Task-pool entry point when no model scorer runs: score a partition and write its shard in one task.

    Why one task: as two Ray Data operators (decode, then writer), each got its own share of the CPUs
    (Ray Data reserves resources per operator), so a 2-core machine scored one partition at a time while the
    other core waited for a writer task. Fused, every CPU scores, and the scored rows (image bytes included)
    never pass through the object store: only the writer's summary rows leave the task.
    """
    return write_blocks(score_partitions(batch, cpu_classes, (), cfg), job)


def _empty_partition_row(index: int, schema: pa.Schema) -> pa.Table:
    row = {f.name: [None] for f in schema}
    row["partition"], row[EXPECTED] = [index], [0]
    return pa.table({f.name: pa.array(row[f.name], f.type) for f in schema})


class ModelStage:
    """Actor for `map_batches(compute=ActorPoolStrategy)`: one loaded model scorer per actor.

    `followers` are embedding scorers: when this actor's scorer is the shared `embedding` filter, each of
    them scores the batch's embeddings right after they are computed (one network pass for all).
    """

    def __init__(
        self,
        scorer_cls: type[ModelScorer],
        cfg: ScoringConfig,
        cpu_threads: int = 1,
        followers: Sequence[type[EmbeddingScorer]] = (),
    ) -> None:
        self.scorer: ModelScorer = build(scorer_cls, cfg)  # type: ignore[assignment]
        if self.scorer.threads is None:
            self.scorer.threads = cpu_threads
        self.scorer.load()
        self.followers: list[EmbeddingScorer] = [build(c, cfg) for c in followers]  # type: ignore[misc]
        for follower in self.followers:
            follower.load()
        self.batch_size = int(getattr(getattr(cfg, scorer_cls.name, None), "batch_size", 32))
        self._reported: dict[str, dict[str, float]] = {}  # counters already sent to the driver, per scorer

    def __call__(self, table: pa.Table) -> pa.Table:
        scorer = self.scorer
        col = input_column(scorer.name)
        raw = table.column(col).to_pylist()
        captions = table.column("caption").to_pylist()
        images = table.column("image").to_pylist() if scorer.wants_images else None
        inputs = [
            None if r is None else np.frombuffer(r, dtype=scorer.input_dtype).reshape(scorer.input_shape) for r in raw
        ]
        results = score_model_rows(scorer, inputs, captions, images, self.batch_size)
        table = table.drop_columns([col])
        for name, arr in scorer.to_arrays(results).items():
            table = table.append_column(name, arr)
        if self.followers:
            for name, arr in score_embeddings(self.followers, results["image_embedding"], captions).items():
                table = table.append_column(name, arr)
        return self._with_counters(table)

    def _with_counters(self, table: pa.Table) -> pa.Table:
        """Carry this call's counters (time, rows) to the driver on one row, so the run log lists model scorers.

        The driver sums every row's counters when a partition completes; the delta since the last call goes on
        the first real row (an empty partition's marker row is dropped by the driver, so it cannot carry it).
        """
        expected = table.column(EXPECTED).to_pylist()
        target = next((i for i, e in enumerate(expected) if e), None)
        if target is None:
            return table
        values = table.column(COUNTERS).to_pylist()
        merged = json.loads(values[target]) if values[target] else {}
        for scorer in [self.scorer, *self.followers]:
            now = asdict(scorer.counters)
            before = self._reported.get(scorer.name, {})
            delta = {k: now[k] - before.get(k, 0) for k in now}
            self._reported[scorer.name] = now
            if delta["calls"]:
                merged[scorer.name] = delta
        if not merged:
            return table
        values[target] = json.dumps(merged)
        index = table.column_names.index(COUNTERS)
        return table.set_column(index, COUNTERS, pa.array(values, pa.string()))


def score_model_rows(
    scorer: ModelScorer,
    inputs: Sequence[np.ndarray | None],
    captions: Sequence[str | None],
    images: Sequence[bytes | None] | None,
    batch_size: int,
) -> dict[str, list[Any]]:
    """One model scorer over prepared per-row inputs, in stacked batches; rows without an input get None.

    Shared by the score actors and `score-missing`, so both batch, pass captions and raw bytes the same way.
    """
    results: dict[str, list[Any]] = {c.name: [None] * len(inputs) for c in scorer.columns}
    valid = [i for i, x in enumerate(inputs) if x is not None]
    for start in range(0, len(valid), batch_size):
        chunk = valid[start : start + batch_size]
        texts = [captions[i] if scorer.wants_captions else None for i in chunk]
        raw = [images[i] for i in chunk] if scorer.wants_images and images is not None else None
        out = scorer(np.stack([inputs[i] for i in chunk]), texts, raw)
        for name, values in out.items():
            for i, v in zip(chunk, list(values), strict=True):
                results[name][i] = v
    return results


def score_embeddings(
    scorers: Sequence[EmbeddingScorer], embeddings: Sequence[Any], captions: Sequence[str | None]
) -> dict[str, pa.Array]:
    """Run embedding scorers over one batch's embeddings (None where the image did not decode).

    Shared by the score actors and `score-missing` (which reads a stored `image_embedding` column instead of
    running the network again).
    """
    from filters.embedding import FEATURE_DIM

    n = len(embeddings)
    ok = np.array([e is not None for e in embeddings], dtype=bool)
    matrix = np.zeros((n, FEATURE_DIM), dtype=np.float32)
    for i in np.flatnonzero(ok):
        matrix[i] = np.asarray(embeddings[i], dtype=np.float32)
    columns: dict[str, pa.Array] = {}
    for scorer in scorers:
        texts = list(captions) if scorer.wants_captions else [None] * n
        columns.update(scorer.to_arrays(scorer(matrix, ok, texts)))
    return columns


@dataclass
class ScoreShards(ShardJob):
    """Pool shards as `flywheel score` writes them: registry column order, pipeline-internal columns dropped."""

    schema: pa.Schema | None = None

    def finish(self, index: int, table: pa.Table) -> pa.Table:
        assert self.schema is not None
        return conform(table, self.schema)

    def stats(self, table: pa.Table) -> dict[str, Any]:
        """Scorer counters carried on the rows, and captions missing among real rows (not an empty marker)."""
        expected = int(table.column(EXPECTED)[0].as_py())
        return {
            "counters": _partition_counters(table),
            "captions_missing": table.column("caption").null_count if expected else 0,
        }


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Order columns as the registry declares them and drop pipeline-internal ones."""
    arrays = []
    for f in schema:
        if f.name in table.column_names:
            arrays.append(table.column(f.name).cast(f.type))
        else:  # a model scorer that could not run: its columns exist, and are null
            arrays.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _partition_counters(part: pa.Table) -> dict[str, dict[str, float]]:
    merged: dict[str, dict[str, float]] = {}
    for raw in part.column(COUNTERS).drop_null().to_pylist():
        for name, values in json.loads(raw).items():
            total = Counters(**merged[name]) if name in merged else Counters()
            total.merge(Counters(**values))
            merged[name] = asdict(total)
    return merged
