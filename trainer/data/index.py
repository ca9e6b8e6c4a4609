"""The row index of a stage's data: where each row is, its source, task, bucket and provenance.

Why an index instead of reading whole shards: the loader needs to mix sources by weight and tasks by ratio,
and group rows by bucket, before touching any image bytes. Reading only `task`, `width`, `height` (and
`provenance` for mixed-in track rows; a few bytes per row, column-pruned Parquet reads) keeps the index small
even for millions of rows, and image bytes are read row group by row group later, only for the rows a batch
needs.

Which shards: only complete ones (a `ShardStore` completion marker, never a bare `part-*.parquet` glob, so a
half-written or abandoned shard is never trained on). Per recipe: `curated/<recipe>/`, replaced shard by shard
by `captioned/<recipe>/` where the captioned shard is complete and holds the same rows (it then trains on
`caption_fused` when present); plus the recipe's `mix:` sources as `flywheel select` wrote them
(`selections/<recipe>/mix.json`, contract in docs/flywheel-loop.md), each drawn at its weight.

Category weights: a selection whose recipe has `quotas:` records the shares in its manifest
(`category_weights`) and writes each kept row's `category`; the index then carries every curated row's
category, and the loader draws the curated batches per category at those shares (docs/categories.md).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from flywheel.config import ConfigError
from flywheel.schema import TASKS
from flywheel.select.mix import read_mix
from flywheel.store import fs as storage
from flywheel.store.images import holds_bytes
from flywheel.store.shards import ShardStore
from flywheel.workspace import Workspace
from trainer.config import DataConfig
from trainer.data.buckets import Bucket, assign_buckets

CURATED = "curated"  # the source name of a stage's own (curated or captioned) rows
CATEGORY = "category"  # the column `flywheel select` writes for a recipe with `categories:`
FUSED_CAPTION = "caption_fused"
PAIR_COLUMNS = ("prompt", "chosen_image", "rejected_image")
REQUIRED_COLUMNS = ("id", "image", "caption", "task", "width", "height")


@dataclass(frozen=True)
class ShardRef:
    """One shard to read: its path, the source it belongs to, and the caption column to train on."""

    path: Path
    source: str = CURATED
    caption_column: str = "caption"


@dataclass
class DataPlan:
    """What a stage reads: shards by source, each source's draw probability, and what was decided on the way."""

    shards: list[ShardRef]
    weights: dict[str, float]
    notes: list[str] = field(default_factory=list)
    captioned: int = 0  # curated shards replaced by their captioned version
    category_weights: dict[str, float] = field(default_factory=dict)  # the recipe's quota shares, when it has them


@dataclass
class RowIndex:
    shards: list[Path]
    shard_of: np.ndarray  # int32 [N]
    row_of: np.ndarray  # int64 [N]: row within the shard
    task_of: np.ndarray  # int8 [N]: index into TASKS
    bucket_of: np.ndarray  # int64 [N]: index into buckets
    buckets: list[Bucket]
    skipped: int  # rows without a usable size (null width/height)
    source_of: np.ndarray | None = None  # int8 [N]: index into `sources` (None: all curated)
    sources: list[str] = field(default_factory=lambda: [CURATED])
    weights: dict[str, float] = field(default_factory=lambda: {CURATED: 1.0})
    provenance_of: np.ndarray | None = None  # int16 [N]: index into `provenances`
    provenances: list[str] = field(default_factory=lambda: [CURATED])
    caption_columns: list[str] = field(default_factory=list)  # per shard
    shard_sources: list[str] = field(default_factory=list)  # per shard
    # curated rows' category (index into `categories`; -1 for other sources) when the selection weights them
    category_of: np.ndarray | None = None
    categories: list[str] = field(default_factory=list)
    category_weights: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.shard_of)
        if self.source_of is None:
            self.source_of = np.zeros(n, np.int8)
        if self.provenance_of is None:
            self.provenance_of = np.zeros(n, np.int16)
        if not self.caption_columns:
            self.caption_columns = ["caption"] * len(self.shards)
        if not self.shard_sources:
            self.shard_sources = [CURATED] * len(self.shards)

    @property
    def rows(self) -> int:
        return len(self.shard_of)

    def fingerprint(self) -> str:
        """Changes when the shards or their row counts change: a resume must read the same data."""
        h = hashlib.blake2b(digest_size=12)
        for shard, source, caption in zip(self.shards, self.shard_sources, self.caption_columns, strict=True):
            # curated shards keep the original form, so checkpoints written before mixing still resume
            prefix = "" if source == CURATED and caption == "caption" else f"{source}:{shard.parent.parent.name}/"
            h.update(
                f"{prefix}{shard.parent.name}/{shard.name}:{storage.parquet_file(shard).metadata.num_rows};".encode()
            )
        if set(self.weights) != {CURATED}:
            h.update(json.dumps(self.weights, sort_keys=True).encode())
        if self.category_weights:  # a plan drawn per category is another sequence of batches
            h.update(json.dumps(self.category_weights, sort_keys=True).encode())
        return h.hexdigest()

    def groups(self) -> dict[str, np.ndarray]:
        """Row numbers per group, each sorted (the loader permutes them per epoch). Keys: `TASK/bucket` for
        the curated source, `SOURCE|TASK/bucket` for a mixed-in one (see `split_group_key`)."""
        out: dict[str, np.ndarray] = {}
        for s, source in enumerate(self.sources):
            for t, task in enumerate(TASKS):
                for b, bucket in enumerate(self.buckets):
                    rows = np.flatnonzero((self.source_of == s) & (self.task_of == t) & (self.bucket_of == b))
                    if len(rows):
                        key = f"{task}/{bucket.key}"
                        out[key if source == CURATED else f"{source}|{key}"] = rows
        return out


def split_group_key(key: str) -> tuple[str, str, Bucket]:
    """(source, task, bucket) of a group key."""
    source, _, rest = key.rpartition("|")
    task, bucket = rest.split("/", 1)
    return source or CURATED, task, Bucket.from_key(bucket.split("@", 1)[0])  # `@category`: a planner's sub-group


def _complete(store: ShardStore) -> dict[int, Path]:
    return {info.index: store.root / info.shard for info in store.infos()}


def curated_shards(workspace: Workspace, recipes: list[str]) -> list[Path]:
    """Complete curated shards of `recipes` (completion markers honoured), in recipe then shard order."""
    shards: list[Path] = []
    for recipe in recipes:
        folder = workspace.curated_dir(recipe)
        found = [path for _, path in sorted(_complete(workspace.curated_store(recipe)).items())]
        if not found:
            raise ConfigError(
                f"no complete curated shards in {folder}: run `flywheel select --workspace {workspace.root} "
                f"--recipe {recipe}` first (or change data.recipes in the stage YAML)"
            )
        shards.extend(found)
    return shards


def resolve_data(workspace: Workspace, cfg: DataConfig) -> DataPlan:
    """The shards a `flow` stage reads and each source's draw probability (see the module docstring)."""
    refs: list[ShardRef] = []
    notes: list[str] = []
    captioned = 0
    for recipe in cfg.recipes:
        curated = workspace.curated_store(recipe)  # markers live in selections/<recipe>/
        cur = sorted(_complete(curated).items())
        if not cur:
            raise ConfigError(
                f"no complete curated shards in {curated.root}: run `flywheel select --workspace "
                f"{workspace.root} --recipe {recipe}` first (or change data.recipes in the stage YAML)"
            )
        cap_store = ShardStore(workspace.captioned_dir(recipe))
        cap = {} if cfg.captions == "curated" else {i.index: i for i in cap_store.infos()}
        cur_rows = {i.index: i.rows for i in curated.infos()}
        for index, path in cur:
            info = cap.get(index)
            if info is not None and info.rows == cur_rows[index]:
                cap_path = cap_store.root / info.shard
                column = FUSED_CAPTION if FUSED_CAPTION in storage.read_schema(cap_path).names else "caption"
                refs.append(ShardRef(cap_path, CURATED, column))
                captioned += 1
            elif cfg.captions == "captioned":
                raise ConfigError(
                    f"data.captions is captioned but {path.name} of {recipe} has no complete captioned shard "
                    f"with the same rows; run `flywheel caption --workspace {workspace.root} --recipe {recipe}`"
                )
            else:
                refs.append(ShardRef(path))
    weights: dict[str, float] = {}
    if cfg.mix:
        for recipe in cfg.recipes:
            for entry in read_mix(workspace, recipe):  # the selection's mix.json (docs/flywheel-loop.md)
                source, weight = str(entry["from"]), float(entry["weight"])  # type: ignore[arg-type]
                if source in weights and abs(weights[source] - weight) > 1e-9:
                    raise ConfigError(
                        f"recipes {cfg.recipes} mix {source} at different weights ({weights[source]} and {weight})"
                    )
                found = [path for _, path in sorted(_complete(ShardStore(workspace.root / str(entry["dir"]))).items())]
                if not found:
                    notes.append(f"mix source {source} of {recipe} has no rows (weight {weight} renormalised away)")
                    continue
                weights[source] = weight
                refs.extend(ShardRef(path, source) for path in found if ShardRef(path, source) not in refs)
    mixed = sum(weights.values())
    if mixed >= 1.0:
        raise ConfigError(f"mix weights sum to {mixed:.3f}; they must leave the curated rows a share (< 1)")
    weights = {CURATED: 1.0 - mixed, **weights}
    category_weights, category_notes = recipe_category_weights(workspace, cfg.recipes)
    return DataPlan(refs, weights, notes + category_notes, captioned, category_weights)


def recipe_category_weights(workspace: Workspace, recipes: list[str]) -> tuple[dict[str, float], list[str]]:
    """The category shares the selections of `recipes` recorded (`category_weights` in their manifest).

    Several recipes must agree on them; otherwise (or when one has none) the curated rows are drawn uniformly
    and a note says why.
    """
    found: dict[str, dict[str, float]] = {}
    for recipe in recipes:
        store = workspace.curated_store(recipe)
        manifest = store.read_manifest() if store.manifest_path.is_file() else {}  # hand-written shards have none
        found[recipe] = manifest.get("category_weights") or {}
    distinct = {json.dumps(w, sort_keys=True) for w in found.values()}
    if len(distinct) > 1:
        return {}, [f"recipes {recipes} record different category weights {found}: curated rows drawn uniformly"]
    weights = next(iter(found.values()), {})
    return {str(c): float(w) for c, w in weights.items()}, []


def build_plan_index(plan: DataPlan, buckets: list[Bucket]) -> RowIndex:
    """The row index of a resolved data plan (sources, captions, provenance, curated categories)."""
    index = build_index([r.path for r in plan.shards], buckets, refs=plan.shards)
    index.weights = {s: plan.weights[s] for s in index.sources}
    if plan.category_weights:
        attach_categories(index, plan.category_weights)
    return index


def attach_categories(index: RowIndex, weights: dict[str, float]) -> None:
    """Read the `category` column of the index's curated shards, for rows the index holds, and the weights."""
    categories = list(weights)
    category_of = np.full(index.rows, -1, np.int16)
    for s, (shard, source) in enumerate(zip(index.shards, index.shard_sources, strict=True)):
        if source != CURATED:
            continue
        if CATEGORY not in storage.read_schema(shard).names:
            raise ConfigError(f"{shard} has no {CATEGORY} column but its selection records category weights")
        values = storage.read_table(shard, columns=[CATEGORY]).column(CATEGORY).to_pylist()
        mine = np.flatnonzero(index.shard_of == s)
        for i in mine:
            label = str(values[int(index.row_of[i])])
            if label not in categories:
                categories.append(label)  # a category with no weight: never drawn (weight 0)
            category_of[i] = categories.index(label)
    index.category_of, index.categories = category_of, categories
    index.category_weights = {c: float(weights.get(c, 0.0)) for c in categories}


def build_index(shards: list[Path], buckets: list[Bucket], refs: list[ShardRef] | None = None) -> RowIndex:
    refs = refs or [ShardRef(p) for p in shards]
    sources = list(dict.fromkeys([CURATED] + [r.source for r in refs]))
    provenances: list[str] = [CURATED]
    shard_of, row_of, task_of, widths, heights, source_of, prov_of = [], [], [], [], [], [], []
    skipped = 0
    for s, shard in enumerate(shards):
        ref = refs[s]
        schema = storage.parquet_file(shard).schema_arrow
        names = schema.names
        if not holds_bytes(shard, schema):  # a selection or track data: the pool row holds the image bytes
            names = [*names, "image"]
        missing = [c for c in REQUIRED_COLUMNS if c not in names]
        if missing:
            raise ConfigError(
                f"{shard} lacks core columns {missing}; the trainer reads curated shards written by "
                "`flywheel select` (columns id, image, caption, task, width, height, source_image)"
            )
        table = storage.read_table(shard, columns=["task", "width", "height"])
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
        if ref.source == CURATED:
            prov = np.zeros(len(rows), np.int16)
        else:
            values = (
                storage.read_table(shard, columns=["provenance"]).column("provenance").to_pylist()
                if "provenance" in names
                else [None] * len(w)
            )
            labels = [str(values[r] or ref.source) for r in rows]
            for label in labels:
                if label not in provenances:
                    provenances.append(label)
            prov = np.array([provenances.index(label) for label in labels], np.int16)
        prov_of.append(prov)
        source_of.append(np.full(len(rows), sources.index(ref.source), np.int8))
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
        source_of=cat(source_of),
        sources=sources,
        weights={s: (1.0 if s == CURATED else 0.0) for s in sources},
        provenance_of=cat(prov_of),
        provenances=provenances,
        caption_columns=[r.caption_column for r in refs],
        shard_sources=[r.source for r in refs],
    )


def pair_shards(workspace: Workspace, cfg: DataConfig) -> list[Path]:
    """Complete shards of the preference-pair track (`data.pairs`, default `tracks/rl`)."""
    store = ShardStore(workspace.root / cfg.pairs)
    found = [path for _, path in sorted(_complete(store).items())]
    if not found:
        raise ConfigError(
            f"no complete preference-pair shards in {store.root}: write the RL track first "
            f"(`flywheel tracks --workspace {workspace.root}`), or set data.pairs"
        )
    return found


def build_pair_index(shards: list[Path], buckets: list[Bucket]) -> RowIndex:
    """Index of (chosen, rejected) pairs; a pair's size is its chosen image's (both have the same size)."""
    shard_of, row_of, task_of, widths, heights = [], [], [], [], []
    for s, shard in enumerate(shards):
        names = storage.parquet_file(shard).schema_arrow.names
        missing = [c for c in PAIR_COLUMNS if c not in names]
        if missing:
            raise ConfigError(f"{shard} lacks preference-pair columns {missing} (docs/flywheel-loop.md, tracks/rl)")
        cols = ["chosen_image"] + (["task"] if "task" in names else [])
        table = storage.read_table(shard, columns=cols)
        sizes = [Image.open(io.BytesIO(b)).size for b in table.column("chosen_image").to_pylist()]
        tasks = table.column("task").to_pylist() if "task" in names else ["T2I"] * len(sizes)
        task = np.array([TASKS.index(t) if t in TASKS else -1 for t in tasks], np.int8)
        if (task < 0).any():
            raise ConfigError(f"{shard}: task must be one of {TASKS}")
        n = len(sizes)
        shard_of.append(np.full(n, s, np.int32))
        row_of.append(np.arange(n, dtype=np.int64))
        task_of.append(task)
        widths.append(np.array([w for w, _ in sizes], np.int64))
        heights.append(np.array([h for _, h in sizes], np.int64))
    cat = np.concatenate
    return RowIndex(
        shards=shards,
        shard_of=cat(shard_of),
        row_of=cat(row_of),
        task_of=cat(task_of),
        bucket_of=assign_buckets(cat(widths), cat(heights), buckets),
        buckets=buckets,
        skipped=0,
        shard_sources=["pairs"] * len(shards),
    )
