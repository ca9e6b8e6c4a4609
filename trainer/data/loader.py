"""The shard loader: a deterministic batch plan, then image reads for the rows each batch needs.

Why a plan that is a pure function of (seed, batch number, cursors): resume must neither repeat nor skip data,
and ranks/workers must agree without talking. Batch k draws its task (T2I with probability `t2i_ratio`) and
its bucket (proportional to the bucket's size in that task) from an RNG seeded by (seed, k); every rank draws
the same, so all ranks of a step share one shape. The group's cursor then advances by `world * batch_size`;
rank r takes positions [cursor + r*B, cursor + (r+1)*B) of the group's per-epoch permutation. Workers take
batches k = w (mod num_workers) and torch's DataLoader returns them round robin, i.e. in order k. The
position saved in a checkpoint is just `{batch, cursors}` (plus the counts of rows drawn per source and per
provenance, so the run log's provenance mix stays cumulative across a resume).

Mixed sources (a recipe's `mix:`): before the task, batch k draws its source from RNG(seed, k) with the
sources' weights (curated: 1 - sum of the mix weights), so a whole batch comes from one source (one shape, as
buckets need) and the share of rows from each source converges to its weight. With one source this draw is
skipped, so plans of unmixed stages are exactly what they were before mixing existed.

Category weights (a selection with `quotas:`, trainer/data/index.py): a batch from the curated source then
draws its category from RNG(seed, k) at the recipe's shares (renormalised over the categories that have rows),
and its task and bucket among that category's rows, so each category's share of the drawn rows converges to
its share in the recipe, also where the kept rows are not in those proportions (`quotas: {mode: sample}`).
Each category's rows form their own groups (`TASK/bucket@category`, own cursors and permutations); the counts
drawn per category are kept in the loader state and logged. Without weights the plan is unchanged.

Preference stages read pairs: the same planner over a pair index, and `load_pair_batch` decodes the chosen
and rejected image of each row into the batch's bucket.
"""

from __future__ import annotations

import zlib
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
from PIL import Image

from flywheel.config import ConfigError
from flywheel.imaging import decode
from flywheel.schema import TASKS
from flywheel.store import fs as storage
from flywheel.store.images import BYTE_COLUMNS, IMAGES_SHARD, POOL_ROW, BytesReader, bytes_source
from trainer.config import DataConfig
from trainer.data.buckets import Bucket, fit_to_bucket
from trainer.data.index import CURATED, RowIndex, split_group_key


@dataclass
class LoaderState:
    batch: int = 0
    cursors: dict[str, int] = field(default_factory=dict)
    fingerprint: str = ""
    drawn: dict[str, int] = field(default_factory=dict)  # rows of the global batch per source
    provenance: dict[str, int] = field(default_factory=dict)  # rows of the global batch per provenance
    categories: dict[str, int] = field(default_factory=dict)  # curated rows of the global batch per category

    def to_json(self) -> dict[str, object]:
        return {
            "batch": self.batch,
            "cursors": dict(self.cursors),
            "fingerprint": self.fingerprint,
            "drawn": dict(self.drawn),
            "provenance": dict(self.provenance),
            "categories": dict(self.categories),
        }

    @classmethod
    def from_json(cls, data: dict[str, object]) -> LoaderState:
        return cls(
            batch=int(data["batch"]),
            cursors={str(k): int(v) for k, v in dict(data["cursors"]).items()},
            fingerprint=str(data.get("fingerprint", "")),
            drawn={str(k): int(v) for k, v in dict(data.get("drawn") or {}).items()},
            provenance={str(k): int(v) for k, v in dict(data.get("provenance") or {}).items()},
            categories={str(k): int(v) for k, v in dict(data.get("categories") or {}).items()},
        )


@dataclass(frozen=True)
class BatchPlan:
    batch: int
    task: str
    bucket: Bucket
    rows: np.ndarray  # index rows of this rank's part of the batch
    drop: np.ndarray  # bool per row: unconditional dropout (caption replaced by "")
    source: str = CURATED


@dataclass
class Batch:
    """One rank's micro-batch: images in [-1, 1], captions after dropout, sources for edits."""

    batch: int
    task: str
    bucket: Bucket
    ids: list[str]
    captions: list[str]
    images: torch.Tensor  # [B, 3, H, W] float32
    sources: torch.Tensor | None  # [B, 3, H, W] for TI2I
    dropped: int
    source: str = CURATED  # the data source the batch was drawn from
    rejected: torch.Tensor | None = None  # [B, 3, H, W]: preference batches' rejected images (chosen = images)


def _group_seed(key: str) -> int:
    return zlib.crc32(key.encode())


class BatchPlanner:
    """Turns the index into the deterministic sequence of per-rank batch plans."""

    def __init__(self, index: RowIndex, cfg: DataConfig, seed: int, rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise ValueError(f"rank {rank} outside world size {world}")
        self.index, self.cfg, self.seed, self.rank, self.world = index, cfg, seed, rank, world
        self.groups = index.groups()
        # groups per (source, task); sources with rows, with their weights renormalised over those
        self.keys: dict[tuple[str, str], list[str]] = {}
        for key in sorted(self.groups):
            source, task, _ = split_group_key(key)
            self.keys.setdefault((source, task), []).append(key)
        present = [s for s in index.sources if any((s, t) in self.keys for t in TASKS)]
        if CURATED not in present or not self.groups:
            raise ConfigError("the curated shards hold no usable rows")
        total = sum(index.weights.get(s, 0.0) for s in present)
        self.sources = [s for s in present if index.weights.get(s, 0.0) > 0]
        self.weights = np.array([index.weights[s] / total for s in self.sources], dtype=np.float64)
        self.by_task: dict[str, list[str]] = {t: self.keys.get((CURATED, t), []) for t in TASKS}
        missing = [t for t in TASKS if not self.by_task[t]]
        wanted = {"T2I": cfg.t2i_ratio > 0, "TI2I": cfg.t2i_ratio < 1}
        lacking = [t for t in missing if wanted[t]]
        if len(lacking) == 2:
            raise ConfigError("the curated shards hold no usable rows")
        if lacking and not cfg.allow_missing_tasks:
            raise ConfigError(
                f"data.t2i_ratio={cfg.t2i_ratio} asks for {lacking[0]} rows but the curated shards "
                f"hold none; select a recipe with {lacking[0]} data or set "
                "data.allow_missing_tasks: true to train on what is there"
            )
        self.effective_t2i_ratio = self._ratio(CURATED)
        self.categories, self.category_weights, self.notes = self._category_groups()

    def _category_groups(self) -> tuple[list[str], np.ndarray, list[str]]:
        """Split the curated groups per category when the index weights categories; (categories, weights, notes)."""
        index = self.index
        if not index.category_weights or index.category_of is None:
            return [], np.zeros(0), []
        rows = {c: int((index.category_of == i).sum()) for i, c in enumerate(index.categories)}
        drawn = [c for c in index.categories if rows[c] and index.category_weights.get(c, 0.0) > 0]
        notes = [
            f"category {c} has weight {index.category_weights[c]:g} but no curated rows: its share goes to the others"
            for c in index.categories
            if not rows[c] and index.category_weights.get(c, 0.0) > 0
        ]
        if not drawn:
            return [], np.zeros(0), [*notes, "no weighted category has rows: curated rows drawn uniformly"]
        for task in TASKS:
            for key in self.keys.get((CURATED, task), []):
                members = self.groups[key]
                for c in drawn:
                    sub = members[index.category_of[members] == index.categories.index(c)]
                    if len(sub):
                        self.groups[f"{key}@{c}"] = sub
                        self.keys.setdefault((f"@{c}", task), []).append(f"{key}@{c}")
        weights = np.array([index.category_weights[c] for c in drawn], dtype=np.float64)
        return drawn, weights / weights.sum(), notes

    def _ratio(self, source: str) -> float:
        """T2I share within a source: the configured ratio, or 1/0 when the source has only one task."""
        has = {t: bool(self.keys.get((source, t))) for t in TASKS}
        return 1.0 if not has["TI2I"] else 0.0 if not has["T2I"] else self.cfg.t2i_ratio

    def _permutation(self, key: str, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, _group_seed(key), epoch])
        return rng.permutation(len(self.groups[key]))

    def plans(self, state: LoaderState) -> Iterator[tuple[BatchPlan, LoaderState]]:
        """Plans from `state` on; each comes with the state *after* it (what a checkpoint stores)."""
        cursors = dict(state.cursors)
        drawn, provenance, categories = dict(state.drawn), dict(state.provenance), dict(state.categories)
        k = state.batch
        bs = self.cfg.batch_size
        while True:
            source = CURATED
            if len(self.sources) > 1:
                pick = np.random.default_rng([self.seed, k, 0x50C3]).choice(len(self.sources), p=self.weights)
                source = self.sources[int(pick)]
            group_source, category = source, None
            if source == CURATED and self.categories:
                draw = np.random.default_rng([self.seed, k, 0xCA7E])
                pick = draw.choice(len(self.categories), p=self.category_weights)
                category = self.categories[int(pick)]
                group_source = f"@{category}"
            rng = np.random.default_rng([self.seed, k, 0x7A5C])
            task = "T2I" if rng.random() < self._ratio(group_source) else "TI2I"
            keys = self.keys[(group_source, task)]
            sizes = np.array([len(self.groups[key]) for key in keys], dtype=np.float64)
            key = keys[int(rng.choice(len(keys), p=sizes / sizes.sum()))]
            start = cursors.get(key, 0)
            positions = start + np.arange(self.world * bs)  # the global batch; this rank takes its slice
            group = self.groups[key]
            n = len(group)
            rows_all = np.empty(len(positions), dtype=np.int64)
            for epoch in np.unique(positions // n):
                sel = positions // n == epoch
                rows_all[sel] = group[self._permutation(key, int(epoch))[positions[sel] % n]]
            rows = rows_all[self.rank * bs : (self.rank + 1) * bs]
            drop = np.random.default_rng([self.seed, k, self.rank, 0xD809]).random(bs) < self.cfg.uncond_dropout
            cursors[key] = start + self.world * bs
            drawn[source] = drawn.get(source, 0) + len(rows_all)
            if category is not None:
                categories[category] = categories.get(category, 0) + len(rows_all)
            for p, count in zip(*np.unique(self.index.provenance_of[rows_all], return_counts=True), strict=True):
                label = self.index.provenances[int(p)]
                provenance[label] = provenance.get(label, 0) + int(count)
            k += 1
            bucket = split_group_key(key)[2]
            yield (
                BatchPlan(k - 1, task, bucket, rows, drop, source),
                LoaderState(
                    batch=k,
                    cursors=dict(cursors),
                    fingerprint=state.fingerprint,
                    drawn=drawn,
                    provenance=provenance,
                    categories=categories,
                ),
            )


class RowReader:
    """Reads rows by (shard, row) through a small LRU cache of decoded Parquet row groups."""

    COLUMNS = ("id", "image", "caption", "task", "source_image")
    PAIR_COLUMNS = ("prompt", "chosen_image", "rejected_image", "source_image", "badcase_id")

    def __init__(self, index: RowIndex, cache_size: int, columns: tuple[str, ...] | None = None) -> None:
        self.index = index
        self.cache_size = cache_size
        self.columns = columns or self.COLUMNS
        self._cache: OrderedDict[tuple[int, int], dict[str, list[object]]] = OrderedDict()
        self._files: dict[int, tuple[pq.ParquetFile, np.ndarray, list[str]]] = {}
        # shard -> the pool shard holding its image bytes, or its own folder for per-row references (None: itself)
        self._bytes_of: dict[int, Path | None] = {}
        self._bytes = BytesReader(cache_size)
        self._resolved: dict[tuple[Path, str], Path] = {}

    def _file(self, shard: int) -> tuple[pq.ParquetFile, np.ndarray, list[str]]:
        if shard not in self._files:
            pf = storage.parquet_file(self.index.shards[shard])
            starts = np.cumsum([0] + [pf.metadata.row_group(i).num_rows for i in range(pf.num_row_groups)])
            wanted = list(self.columns)
            caption = self.index.caption_columns[shard]
            if "caption" in wanted and caption != "caption":
                wanted.append(caption)  # the fused caption, falling back to the raw one where it is null
            cols = [c for c in dict.fromkeys(wanted) if c in pf.schema_arrow.names]
            self._bytes_of[shard] = bytes_source(self.index.shards[shard], pf.schema_arrow)
            if IMAGES_SHARD.name in pf.schema_arrow.names:  # per-row references (track data): one pool shard a row
                self._bytes_of[shard] = self.index.shards[shard].parent
            if self._bytes_of[shard] is not None:
                refs = [POOL_ROW.name, IMAGES_SHARD.name]
                cols = [c for c in dict.fromkeys(["id", *cols, *refs]) if c in pf.schema_arrow.names]
            self._files[shard] = (pf, starts, cols)
        return self._files[shard]

    def row(self, i: int) -> dict[str, object]:
        shard, row = int(self.index.shard_of[i]), int(self.index.row_of[i])
        pf, starts, cols = self._file(shard)
        group = int(np.searchsorted(starts, row, side="right") - 1)
        key = (shard, group)
        if key not in self._cache:
            self._cache[key] = pf.read_row_group(group, columns=cols).to_pydict()
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        data = self._cache[key]
        out = {c: data[c][row - int(starts[group])] for c in cols}
        source = self._bytes_of[shard]
        if source is not None:
            wanted = [c for c in BYTE_COLUMNS if c in self.columns]
            rel = out.pop(IMAGES_SHARD.name, None)
            if rel is not None:  # per-row reference: resolved once per (folder, pool shard), not once per row
                where = (source, str(rel))
                if where not in self._resolved:
                    self._resolved[where] = (source / str(rel)).resolve()
                source = self._resolved[where]
            if wanted:
                fetched = self._bytes.row(source, int(out.pop(POOL_ROW.name)), str(out["id"]))  # type: ignore[arg-type]
                out.update({c: fetched.get(c) for c in wanted})
        fused = self.index.caption_columns[shard]
        if fused != "caption" and out.get(fused):
            out["caption"] = out[fused]
        return out


def image_tensor(data: bytes | None, bucket: Bucket, what: str) -> tuple[torch.Tensor, Image.Image]:
    """Bounded decode (flywheel.imaging) and bucket fit; the tensor is [3, H, W] in [-1, 1]."""
    decoded = decode(data, view_short_side=max(bucket.width, bucket.height))
    if not decoded.ok or decoded.rgb is None:
        raise ValueError(
            f"{what}: image cannot be decoded ({decoded.broken_reason}: {decoded.broken_detail}); "
            "curated shards should hold only decodable images - re-run `flywheel select`"
        )
    rgb = fit_to_bucket(decoded.rgb, bucket)
    tensor = torch.from_numpy(rgb.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)
    return tensor, Image.fromarray(rgb)


def load_batch(reader: RowReader, plan: BatchPlan) -> Batch:
    ids, captions, images, sources = [], [], [], []
    for i, drop in zip(plan.rows.tolist(), plan.drop.tolist(), strict=True):
        row = reader.row(i)
        ids.append(str(row["id"]))
        captions.append("" if drop else str(row["caption"] or ""))
        images.append(image_tensor(row["image"], plan.bucket, f"row {row['id']}")[0])
        if plan.task == "TI2I":
            if row.get("source_image") is None:
                raise ValueError(f"TI2I row {row['id']} has no source_image")
            sources.append(image_tensor(row["source_image"], plan.bucket, f"source of row {row['id']}")[0])
    return Batch(
        batch=plan.batch,
        task=plan.task,
        bucket=plan.bucket,
        ids=ids,
        captions=captions,
        images=torch.stack(images),
        sources=torch.stack(sources) if sources else None,
        dropped=int(plan.drop.sum()),
        source=plan.source,
    )


def load_pair_batch(reader: RowReader, plan: BatchPlan) -> Batch:
    """A preference batch: `images` are the chosen images, `rejected` the rejected ones, same bucket and crop."""
    ids, captions, chosen, rejected, sources = [], [], [], [], []
    for i, drop in zip(plan.rows.tolist(), plan.drop.tolist(), strict=True):
        row = reader.row(i)
        what = f"pair {row.get('badcase_id') or i}"
        ids.append(str(row.get("badcase_id") or i))
        captions.append("" if drop else str(row["prompt"] or ""))
        chosen.append(image_tensor(row["chosen_image"], plan.bucket, f"{what} (chosen)")[0])
        rejected.append(image_tensor(row["rejected_image"], plan.bucket, f"{what} (rejected)")[0])
        if plan.task == "TI2I":
            if row.get("source_image") is None:
                raise ValueError(f"TI2I {what} has no source_image")
            sources.append(image_tensor(row["source_image"], plan.bucket, f"source of {what}")[0])
    return Batch(
        batch=plan.batch,
        task=plan.task,
        bucket=plan.bucket,
        ids=ids,
        captions=captions,
        images=torch.stack(chosen),
        sources=torch.stack(sources) if sources else None,
        dropped=int(plan.drop.sum()),
        source=plan.source,
        rejected=torch.stack(rejected),
    )


class ShardBatches(torch.utils.data.IterableDataset):
    """Yields (Batch, state-after) from `start`; with workers, worker w loads batches k = w (mod W)."""

    def __init__(self, planner: BatchPlanner, start: LoaderState, cache_size: int = 16, pairs: bool = False) -> None:
        super().__init__()
        self.planner, self.start, self.cache_size, self.pairs = planner, start, cache_size, pairs

    def __iter__(self) -> Iterator[tuple[Batch, dict[str, object]]]:
        info = torch.utils.data.get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        columns = RowReader.PAIR_COLUMNS if self.pairs else RowReader.COLUMNS
        reader = RowReader(self.planner.index, self.cache_size, columns)
        load = load_pair_batch if self.pairs else load_batch
        for plan, after in self.planner.plans(self.start):
            if (plan.batch - self.start.batch) % workers == worker:
                yield load(reader, plan), after.to_json()


def batch_iterator(
    planner: BatchPlanner, start: LoaderState, num_workers: int, cache_size: int = 16, pairs: bool = False
) -> Iterator[tuple[Batch, LoaderState]]:
    dataset = ShardBatches(planner, start, cache_size, pairs)
    if num_workers == 0:
        for batch, after in dataset:
            yield batch, LoaderState.from_json(after)
        return
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=None,
        num_workers=num_workers,
        collate_fn=_identity,
        persistent_workers=False,
        prefetch_factor=2,
    )
    for batch, after in loader:
        yield batch, LoaderState.from_json(after)


def _identity(x: object) -> object:
    return x
