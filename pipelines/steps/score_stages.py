"""The two Ray Data stages of scoring: a CPU task per partition, an actor pool per model scorer.

CPU stage (`ScorePartition`): read one partition, decode every image once at the largest
view any enabled scorer needs, run the CPU scorers, and run each model scorer's cheap
`prepare` so that only a small fixed-size array per sample travels to the model actors.
Model stage (`ModelStage`): load the model once per actor, score stacked batches, and
replace the prepared input column by the score columns.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import numpy as np
import pyarrow as pa

from filters.base import Counters, CpuScorer, ModelScorer, SampleBatch, Scorer
from filters.config import ScoringConfig
from filters.registry import build, decode_short_side
from flywheel.ids import sample_id
from flywheel.imaging import decode
from flywheel.ingest import read_partition
from flywheel.ingest.base import PartitionSpec
from flywheel.schema import CORE_COLUMNS

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
        samples = list(read_partition(spec))
        n = len(samples)
        images = [s.image for s in samples]
        decoded = [decode(img, self.view_short_side, self.cfg.limits) for img in images]
        for s, d in zip(samples, decoded, strict=True):
            if s.read_error and d.broken_reason is not None:
                d.broken_reason, d.broken_detail = "read_error", s.read_error
        batch = SampleBatch(
            ids=[sample_id(s.image, s.caption, s.source_image) for s in samples],
            images=images,
            captions=[s.caption for s in samples],
            decoded=decoded,
            uris=[s.uri for s in samples],
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
            "task": pa.array([s.task for s in samples], pa.string()),
            "source_image": pa.array([s.source_image for s in samples], pa.binary()),
            "source_uri": pa.array([s.source_uri for s in samples], pa.string()),
            "meta": pa.array([s.meta_json() for s in samples], pa.string()),
        }
        assert list(columns) == [c.name for c in CORE_COLUMNS]
        counters: dict[str, Any] = {}
        for scorer in self.cpu:
            scorer.counters = Counters()  # per partition: the driver sums partitions, scorers outlive them
            out = scorer(batch) if n else scorer.empty_columns(0)
            columns.update(scorer.to_arrays(out))
            counters[scorer.name] = asdict(scorer.counters)
        for scorer in self.model:
            prepared = [scorer.prepare(d).astype(scorer.input_dtype).tobytes() if d.ok else None for d in decoded]
            columns[input_column(scorer.name)] = pa.array(prepared, pa.binary())
        columns[EXPECTED] = pa.array([n] * n, pa.int32())
        columns[COUNTERS] = pa.array([json.dumps(counters)] + [None] * (n - 1) if n else [], pa.string())
        table = pa.table(columns)
        if n == 0:  # an empty partition still has to complete: carry one marker row the driver drops
            table = _empty_partition_row(index, table.schema)
        return table


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


def _empty_partition_row(index: int, schema: pa.Schema) -> pa.Table:
    row = {f.name: [None] for f in schema}
    row["partition"], row[EXPECTED] = [index], [0]
    return pa.table({f.name: pa.array(row[f.name], f.type) for f in schema})


class ModelStage:
    """Actor for `map_batches(compute=ActorPoolStrategy)`: one loaded model scorer per actor."""

    def __init__(self, scorer_cls: type[ModelScorer], cfg: ScoringConfig, cpu_threads: int = 1) -> None:
        self.scorer: ModelScorer = build(scorer_cls, cfg)  # type: ignore[assignment]
        if self.scorer.threads is None:
            self.scorer.threads = cpu_threads
        self.scorer.load()
        self.batch_size = int(getattr(getattr(cfg, scorer_cls.name, None), "batch_size", 32))
        self._reported: dict[str, float] = {}  # counters already sent to the driver

    def __call__(self, table: pa.Table) -> pa.Table:
        scorer = self.scorer
        col = input_column(scorer.name)
        raw = table.column(col).to_pylist()
        captions = table.column("caption").to_pylist() if scorer.wants_captions else [None] * len(raw)
        valid = [i for i, r in enumerate(raw) if r is not None]
        results: dict[str, list[Any]] = {c.name: [None] * len(raw) for c in scorer.columns}
        for start in range(0, len(valid), self.batch_size):
            chunk = valid[start : start + self.batch_size]
            inputs = np.stack(
                [np.frombuffer(raw[i], dtype=scorer.input_dtype).reshape(scorer.input_shape) for i in chunk]
            )
            out = scorer(inputs, [captions[i] for i in chunk])
            for name, values in out.items():
                for i, v in zip(chunk, list(values), strict=True):
                    results[name][i] = v
        table = table.drop_columns([col])
        for name, arr in scorer.to_arrays(results).items():
            table = table.append_column(name, arr)
        return self._with_counters(table)

    def _with_counters(self, table: pa.Table) -> pa.Table:
        """Carry this call's counters (time, rows) to the driver on one row, so the run log lists model scorers.

        The driver sums every row's counters when a partition completes; the delta since the last call goes on
        the first real row (an empty partition's marker row is dropped by the driver, so it cannot carry it).
        """
        now = asdict(self.scorer.counters)
        delta = {k: now[k] - self._reported.get(k, 0) for k in now}
        self._reported = now
        expected = table.column(EXPECTED).to_pylist()
        target = next((i for i, e in enumerate(expected) if e), None)
        if target is None or not delta["calls"]:
            return table
        values = table.column(COUNTERS).to_pylist()
        merged = json.loads(values[target]) if values[target] else {}
        merged[self.scorer.name] = delta
        values[target] = json.dumps(merged)
        index = table.column_names.index(COUNTERS)
        return table.set_column(index, COUNTERS, pa.array(values, pa.string()))
