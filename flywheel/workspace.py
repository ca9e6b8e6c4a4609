"""A workspace folder: the pool, curated selections and run logs of one project.

DIR/pool/part-NNNNN.parquet       scored shards (one per input partition)
DIR/pool/_markers/, _manifest.json, _sources.json (planned partitions and rows per source, + _sources.lock)
DIR/curated/<recipe>/             ONLY the kept shards part-NNNNN.parquet: Hugging Face `datasets`,
                                  Polars, DuckDB `*.parquet` and `pyarrow.dataset` read exactly the kept rows
DIR/selections/<recipe>/          the selection's bookkeeping, where data readers never look:
                                  funnel.json, funnel.txt, rejected.parquet, recipe.json, _manifest.json, _markers/
DIR/exports/<recipe>/<format>/    `flywheel export`: self-contained Parquet or WebDataset shards of a selection
DIR/runs/                         one JSON log per run (counters, timings)
DIR/cache/<name>/                 rebuildable caches (endpoint answers per request)
DIR/pool/_pieces/                 parts of a shard split across Ray blocks, until a task merges them

DIR is a local folder or an object-store prefix (`s3://bucket/ws`, flywheel.store.fs): `root` is then an
`ObjectPath`, which offers the same path methods, so nothing below depends on where the workspace lives.

This module is the one place these names are declared; everything else asks a Workspace.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.errors import UserError
from flywheel.schema import SCHEMA_VERSION
from flywheel.store.fs import ObjectPath, StoragePath, check_bucket, storage_path
from flywheel.store.locks import file_lock
from flywheel.store.shards import CorruptShardError, ShardStore, write_json_atomic

# Selection names: a recipe name, optionally `+<hash of --set overrides>`.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


FUNNEL_JSON = "funnel.json"
FUNNEL_TXT = "funnel.txt"
REJECTED = "rejected.parquet"
RECIPE_JSON = "recipe.json"
# Files an older flywheel wrote inside curated/<recipe>/, beside the kept shards.
_LEGACY_CURATED_FILES = (FUNNEL_JSON, REJECTED, "_manifest.json")


class WorkspaceError(UserError):
    pass


class IncompletePoolError(WorkspaceError):
    """The pool holds fewer rows than its sources planned: selecting now would drop rows silently."""


@dataclass(frozen=True)
class Workspace:
    root: StoragePath

    @classmethod
    def at(cls, path: str | Path | ObjectPath) -> Workspace:
        """The workspace at a folder or an `s3://bucket/prefix` URI (checked now: bucket, endpoint, credentials)."""
        root = storage_path(path)
        if isinstance(root, ObjectPath):
            check_bucket(root)
            return cls(root)
        return cls(root.expanduser().resolve())

    @property
    def pool_dir(self) -> StoragePath:
        return self.root / "pool"

    @property
    def pool(self) -> ShardStore:
        return ShardStore(self.pool_dir)

    @property
    def runs_dir(self) -> StoragePath:
        return self.root / "runs"

    def curated_dir(self, recipe: str) -> StoragePath:
        """The kept shards of a selection, and nothing else."""
        if not _NAME.match(recipe):
            raise WorkspaceError(f"invalid recipe name {recipe!r}")
        return self.root / "curated" / recipe

    def selection_dir(self, recipe: str) -> StoragePath:
        """A selection's funnel, ledger of rejected rows, recipe and shard manifest."""
        self.curated_dir(recipe)  # validates the name
        return self.root / "selections" / recipe

    def captioned_dir(self, recipe: str) -> StoragePath:
        """The captioned version of a selection (its curated columns plus caption columns)."""
        self.curated_dir(recipe)  # validates the name
        return self.root / "captioned" / recipe

    def tracks_dir(self, track: str) -> StoragePath:
        """A track's data (flywheel.tracks.registry names the tracks; the caller checks the name)."""
        if not _NAME.match(track):
            raise WorkspaceError(f"invalid track name {track!r}")
        return self.root / "tracks" / track

    @property
    def index_dir(self) -> StoragePath:
        """The retrieval index (LanceDB tables) and, beside it, the config it was built with."""
        return self.root / "index"

    @property
    def index_config_path(self) -> StoragePath:
        """The `flywheel index --config` of the last build, so search, route and tracks use the same one."""
        return self.index_dir / "index_config.yaml"

    @property
    def badcases_dir(self) -> StoragePath:
        return self.root / "badcases"

    @property
    def reservoirs_dir(self) -> StoragePath:
        return self.root / "reservoirs"

    @property
    def turns_dir(self) -> StoragePath:
        return self.root / "turns"

    @property
    def evaluations_dir(self) -> StoragePath:
        return self.root / "evaluations"

    def checkpoints_dir(self, stage: str | None = None) -> StoragePath:
        """All trainer checkpoints, or one stage's."""
        base = self.root / "checkpoints"
        return base if stage is None else base / stage

    @property
    def dashboards_dir(self) -> StoragePath:
        """Dashboard state: users, thumbnails, caches."""
        return self.root / "dashboards"

    def cache_dir(self, name: str) -> StoragePath:
        """Caches a step may rebuild (endpoint answers per request, ...): `cache/<name>/`."""
        return self.root / "cache" / name

    def mix_dir(self, recipe: str) -> StoragePath:
        """Track rows a selection mixes in (`mix:`), one store per source under it."""
        self.curated_dir(recipe)  # validates the name
        return self.root / "mix" / recipe

    def export_dir(self, recipe: str, fmt: str) -> StoragePath:
        """Self-contained training shards of a selection (`flywheel export`), one folder per format."""
        self.curated_dir(recipe)  # validates the name
        return self.root / "exports" / recipe / fmt

    def curated_store(self, recipe: str) -> ShardStore:
        """The kept shards of `recipe` as a store whose markers and manifest live in selection_dir."""
        return ShardStore(self.curated_dir(recipe), meta_root=self.selection_dir(recipe))

    def funnel_path(self, recipe: str) -> StoragePath:
        return self.selection_dir(recipe) / FUNNEL_JSON

    def rejected_path(self, recipe: str) -> StoragePath:
        return self.selection_dir(recipe) / REJECTED

    def require_selection(self, recipe: str) -> StoragePath:
        """selection_dir of an existing selection; a clear error for none or for the pre-v2 layout."""
        meta = self.selection_dir(recipe)
        if (meta / FUNNEL_JSON).is_file():
            return meta
        curated = self.curated_dir(recipe)
        if any((curated / name).exists() for name in _LEGACY_CURATED_FILES):
            raise WorkspaceError(
                f"{curated} was written by an older flywheel (funnel and rejected rows beside the kept shards): "
                f"re-run `flywheel select --workspace {self.root} --recipe {recipe}` to rewrite it"
            )
        raise WorkspaceError(
            f"no selection {recipe!r} in {self.root}: run `flywheel select --workspace {self.root} --recipe {recipe}`"
        )

    def check_schema(self) -> None:
        """Refuse a pool written under another schema version (e.g. content-hash ids before v2).

        `flywheel score` stamps the manifest before its first shard, so a pool it wrote always has one.
        """
        path = self.pool.manifest_path
        if not path.is_file():
            return
        version = json.loads(path.read_text(encoding="utf-8")).get("schema_version")
        if version != SCHEMA_VERSION:
            raise WorkspaceError(
                f"{self.pool_dir} was written with schema version {version}, this flywheel writes {SCHEMA_VERSION} "
                "(sample ids are now source keys, not content hashes): score the source into a new workspace "
                "(or delete pool/ and re-run `flywheel score`)"
            )

    def require_pool(self) -> list[StoragePath]:
        self.check_schema()
        shards = self.pool.shard_paths()
        if not shards:
            raise WorkspaceError(f"no scored pool in {self.root}: run `flywheel score SOURCE --workspace {self.root}`")
        return shards

    def _sources(self) -> dict[str, Any]:
        path = self.pool_dir / "_sources.json"
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}

    def planned_rows(self) -> dict[int, int]:
        """Pool partition index -> rows its source planned, for every registered source."""
        out: dict[int, int] = {}
        for entry in self._sources().values():
            for i, rows in enumerate(entry.get("rows", [])):
                out[int(entry["first"]) + i] = int(rows)
        return out

    def require_complete_pool(self, *, rehash: bool = False) -> list[StoragePath]:
        """Pool shards, verified against their checksums, with every planned row present.

        Shards unchanged since they last hashed right are not hashed again unless `rehash` (ShardStore.verify).

        IncompletePoolError when a planned partition has no shard or fewer rows than planned;
        CorruptShardError (from the store) when a shard's bytes differ from its marker.
        """
        self.require_pool()
        try:
            infos = {i.index: i for i in self.pool.verify(rehash=rehash)}
        except CorruptShardError as exc:  # damaged data (exit 1): say how to repair it
            hint = f"re-run `flywheel score SOURCE --workspace {self.root}` to re-score it"
            raise CorruptShardError(f"{exc}; {hint}") from None
        planned = self.planned_rows()
        missing = sorted(set(planned) - set(infos))
        short = sorted(i for i in planned if i in infos and infos[i].rows != planned[i])
        if missing or short:
            lost = sum(planned[i] for i in missing) + sum(planned[i] - infos[i].rows for i in short)
            names = [f"part-{i:05d}" for i in (missing + short)[:5]]
            raise IncompletePoolError(
                f"pool is incomplete: {lost} of {sum(planned.values())} planned rows missing "
                f"({len(missing)} partition(s) not scored, {len(short)} short; e.g. {', '.join(names)}); "
                f"re-run `flywheel score SOURCE --workspace {self.root}` to finish them"
            )
        return [self.pool.root / infos[i].shard for i in sorted(infos)]

    # Partition offsets per source, so several sources can share one pool without index clashes.
    def source_offset(self, source_key: str, n_partitions: int, planned_rows: list[int] | None = None) -> int:
        """First pool partition index of a source; registers it (with its planned rows) the first time.

        Read-modify-write of `_sources.json` under a file lock: concurrent `score` runs of different
        sources into one workspace must get disjoint partition ranges, not all offset 0.
        """
        with file_lock(self.pool_dir / "_sources.lock"):
            return self._source_offset_locked(source_key, n_partitions, planned_rows)

    def _source_offset_locked(self, source_key: str, n_partitions: int, planned_rows: list[int] | None) -> int:
        path = self.pool_dir / "_sources.json"
        sources = self._sources()
        if source_key in sources:
            entry = sources[source_key]
            if entry["partitions"] != n_partitions:
                raise WorkspaceError(
                    f"source {source_key} now plans {n_partitions} partitions, the pool holds {entry['partitions']}: "
                    "the source changed since it was scored; score it into a new workspace"
                )
            if planned_rows is not None and entry.get("rows") != planned_rows:
                entry["rows"] = planned_rows
                write_json_atomic(path, sources)
            return int(entry["first"])
        first = max((e["first"] + e["partitions"] for e in sources.values()), default=0)
        sources[source_key] = {"first": first, "partitions": n_partitions}
        if planned_rows is not None:
            sources[source_key]["rows"] = planned_rows
        write_json_atomic(path, sources)
        return first

    def curated_recipes(self) -> list[str]:
        base = self.root / "selections"
        if not base.is_dir():
            return []
        # Dot-folders are a selection being built or swapped out (see flywheel.select.engine).
        return sorted(p.name for p in base.iterdir() if not p.name.startswith(".") and (p / FUNNEL_JSON).is_file())
