"""The sharded-job driver `score` and `caption` share: workers finish and write shards, the driver commits.

Both steps turn planned inputs into numbered shards of a `ShardStore` on Ray Data. Once the driver received
every row (image bytes included) and reassembled the shards itself, its memory and network were the ceiling
of a cluster, and the loop was written twice. Now a job appends `write_stage` to its dataset: a task that
writes every shard whose rows all arrived in its block (`ShardStore.write`: temporary name, fsync, rename,
completion marker) and writes a part of a shard that Ray split over several blocks as a piece file. The
driver (`collect`) reads one small summary row per shard or piece (`SUMMARY_SCHEMA`), has a task merge a
shard's pieces once all its rows are in, and reports progress. No row passes through the driver.

A job describes itself with a `ShardJob`: the store, which columns carry the shard index and its expected row
count, each shard's fingerprint, and two hooks: `finish` (the table as stored: final columns, types and
metadata; row-wise, so pieces finish independently) and `stats` (small JSON facts the driver adds up, such as
scorer counters).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from flywheel.store import fs
from flywheel.store.shards import ShardStore

SUMMARY_SCHEMA = pa.schema(
    [
        ("shard", pa.int32()),
        ("rows", pa.int64()),
        ("expected", pa.int64()),
        ("written", pa.bool_()),
        ("piece", pa.string()),
        ("stats", pa.string()),
    ]
)


@dataclass
class ShardJob:
    """What the writer tasks need to finish a job's shards (shipped to Ray workers, so plain data + hooks)."""

    root: str
    key: str  # column holding the shard index
    expected: str  # column holding the shard's expected row count (0: an empty shard's marker row)
    fingerprints: dict[int, str]
    scoring: str = ""

    def store(self) -> ShardStore:
        return ShardStore(self.root)

    def finish(self, index: int, table: pa.Table) -> pa.Table:
        """The rows as stored; must be row-wise (pieces of one shard are finished separately)."""
        return table.drop_columns([c for c in (self.key, self.expected) if c in table.column_names])

    def stats(self, table: pa.Table) -> dict[str, Any]:
        """Facts about these raw rows that the driver adds up (`Summary.stats`)."""
        return {}


def write_blocks(block: pa.Table, job: ShardJob) -> pa.Table:
    """Writer task: write each shard complete in `block`, or its part as a piece; one summary row each."""
    store = job.store()
    out: dict[str, list[Any]] = {f.name: [] for f in SUMMARY_SCHEMA}
    keys = block.column(job.key)
    for index in sorted(set(keys.to_pylist())):
        part = block.filter(pc.equal(keys, index))
        expected = int(part.column(job.expected)[0].as_py())
        rows = part.num_rows if expected else 0
        stats = job.stats(part)
        piece = None
        if rows == expected:
            store.write(index, job.finish(index, part.slice(0, rows)), job.fingerprints[index], scoring=job.scoring)
        else:
            piece = str(store.write_piece(index, job.finish(index, part)))
        values = (index, rows, expected, piece is None, piece, json.dumps(stats) if stats else None)
        for name, value in zip(SUMMARY_SCHEMA.names, values, strict=True):
            out[name].append(value)
    return pa.table(out, schema=SUMMARY_SCHEMA)


def merge_pieces(job: ShardJob, index: int, pieces: list[str]) -> int:
    """Merge task: a shard's piece files (all its rows) into the shard; returns its row count."""
    table = pa.concat_tables([fs.read_table(p) for p in pieces])
    job.store().write(index, table, job.fingerprints[index], scoring=job.scoring)
    for p in pieces:
        fs.storage_path(p).unlink(missing_ok=True)
    return table.num_rows


def write_stage(ds: Any, job: ShardJob) -> Any:
    """Append the writer stage to a Ray dataset (one CPU, like the read/decode tasks, so Ray can fuse them)."""
    import ray

    return ds.map_batches(
        write_blocks,
        fn_args=(job,),
        batch_size=None,
        batch_format="pyarrow",
        compute=ray.data.TaskPoolStrategy(),
        ray_remote_args_fn=one_cpu,
    )


def one_cpu() -> dict[str, Any]:
    """Remote args of a one-CPU task (a function, so Ray Data does not fuse the task into model actors).

    With the object-store variables set, the tasks get them too (`fs.worker_env`): writers open s3:// paths.
    """
    return {"num_cpus": 1, **fs.worker_env()}


@dataclass
class Summary:
    """A shard the workers finished, as the driver sees it: never its rows."""

    shard: int
    rows: int
    stats: list[dict[str, Any]] = field(default_factory=list)  # one per block that carried part of it
    merged: bool = False  # True when it arrived in pieces and a task merged them


@dataclass
class Collected:
    """What `collect` counted while the job ran."""

    bytes_received: int = 0
    merged: int = 0


def collect(ds: Any, job: ShardJob, collected: Collected) -> Iterator[Summary]:
    """Drive the dataset: yield each shard as it completes (pieces merged by a task first).

    Shards that never complete (their task failed) are simply not yielded; the caller compares against
    its plan and reports them, and a re-run redoes them.
    """
    import ray

    merge = ray.remote(num_cpus=1)(merge_pieces).options(**fs.worker_env())
    pieces: dict[int, list[tuple[str, int, dict[str, Any]]]] = defaultdict(list)
    for block in ds.iter_batches(batch_format="pyarrow", batch_size=None, prefetch_batches=1):
        collected.bytes_received += block.nbytes
        for row in block.to_pylist():
            stats = json.loads(row["stats"]) if row["stats"] else {}
            if row["written"]:
                yield Summary(row["shard"], row["rows"], [stats])
                continue
            parts = pieces[row["shard"]]
            parts.append((row["piece"], row["rows"], stats))
            if sum(r for _, r, _ in parts) < row["expected"]:
                continue
            del pieces[row["shard"]]
            rows = ray.get(merge.remote(job, row["shard"], [p for p, _, _ in parts]))
            collected.merged += 1
            yield Summary(row["shard"], rows, [s for _, _, s in parts], merged=True)
