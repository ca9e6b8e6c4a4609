"""The row index of a stage's curated shards: where each row is, its task and its bucket.

Why an index instead of reading whole shards: the loader needs to mix tasks by ratio and group rows by bucket
before touching any image bytes. Reading only `task`, `width`, `height` (a few bytes per row, column-pruned
Parquet reads) keeps the index small even for millions of rows, and image bytes are read row group by row
group later, only for the rows a batch needs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from flywheel.config import ConfigError
from flywheel.schema import TASKS
from flywheel.workspace import Workspace
from trainer.data.buckets import Bucket, assign_buckets

REQUIRED_COLUMNS = ("id", "image", "caption", "task", "width", "height")


@dataclass
class RowIndex:
    shards: list[Path]
    shard_of: np.ndarray  # int32 [N]
    row_of: np.ndarray  # int64 [N]: row within the shard
    task_of: np.ndarray  # int8 [N]: index into TASKS
    bucket_of: np.ndarray  # int64 [N]: index into buckets
    buckets: list[Bucket]
    skipped: int  # rows without a usable size (null width/height)

    @property
    def rows(self) -> int:
        return len(self.shard_of)

    def fingerprint(self) -> str:
        """Changes when the shards or their row counts change: a resume must read the same data."""
        h = hashlib.blake2b(digest_size=12)
        for shard in self.shards:
            h.update(f"{shard.parent.name}/{shard.name}:{pq.ParquetFile(shard).metadata.num_rows};".encode())
        return h.hexdigest()

    def groups(self) -> dict[str, np.ndarray]:
        """Row numbers per `TASK/bucket-key` group, each sorted (the loader permutes them per epoch)."""
        out: dict[str, np.ndarray] = {}
        for t, task in enumerate(TASKS):
            for b, bucket in enumerate(self.buckets):
                rows = np.flatnonzero((self.task_of == t) & (self.bucket_of == b))
                if len(rows):
                    out[f"{task}/{bucket.key}"] = rows
        return out


def curated_shards(workspace: Workspace, recipes: list[str]) -> list[Path]:
    shards: list[Path] = []
    for recipe in recipes:
        folder = workspace.curated_dir(recipe)
        found = sorted(folder.glob("part-*.parquet"))
        if not found:
            raise ConfigError(
                f"no curated shards in {folder}: run `flywheel select --workspace {workspace.root} "
                f"--recipe {recipe}` first (or change data.recipes in the stage YAML)"
            )
        shards.extend(found)
    return shards


def build_index(shards: list[Path], buckets: list[Bucket]) -> RowIndex:
    shard_of, row_of, task_of, widths, heights = [], [], [], [], []
    skipped = 0
    for s, shard in enumerate(shards):
        names = pq.ParquetFile(shard).schema_arrow.names
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise ConfigError(
                f"{shard} lacks core columns {missing}; the trainer reads curated shards written by "
                "`flywheel select` (columns id, image, caption, task, width, height, source_image)"
            )
        table = pq.read_table(shard, columns=["task", "width", "height"])
        task = np.array([TASKS.index(t) if t in TASKS else -1 for t in table.column("task").to_pylist()], np.int8)
        if (task < 0).any():
            raise ConfigError(f"{shard}: task must be one of {TASKS}")
        w = table.column("width").to_numpy(zero_copy_only=False)
        h = table.column("height").to_numpy(zero_copy_only=False)
        ok = ~(np.isnan(w.astype(np.float64)) | np.isnan(h.astype(np.float64)))
        ok &= np.nan_to_num(w.astype(np.float64)) > 0
        ok &= np.nan_to_num(h.astype(np.float64)) > 0
        skipped += int((~ok).sum())
        rows = np.flatnonzero(ok)
        shard_of.append(np.full(len(rows), s, np.int32))
        row_of.append(rows.astype(np.int64))
        task_of.append(task[rows])
        widths.append(w[rows].astype(np.int64))
        heights.append(h[rows].astype(np.int64))
    cat = np.concatenate
    width, height = cat(widths), cat(heights)
    return RowIndex(
        shards=shards,
        shard_of=cat(shard_of),
        row_of=cat(row_of),
        task_of=cat(task_of),
        bucket_of=assign_buckets(width, height, buckets),
        buckets=buckets,
        skipped=skipped,
    )
