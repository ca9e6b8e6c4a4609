"""A workspace folder: the pool, curated selections and run logs of one project.

DIR/pool/part-NNNNN.parquet       scored shards (one per input partition)
DIR/pool/_markers/, _manifest.json, _sources.json
DIR/curated/<recipe>/             kept shards, rejected.parquet, funnel.json, funnel.txt
DIR/runs/                         one JSON log per run (counters, timings)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flywheel.errors import UserError
from flywheel.store.shards import ShardStore, write_json_atomic

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class WorkspaceError(UserError):
    pass


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, path: str | Path) -> Workspace:
        return cls(Path(path).expanduser().resolve())

    @property
    def pool_dir(self) -> Path:
        return self.root / "pool"

    @property
    def pool(self) -> ShardStore:
        return ShardStore(self.pool_dir)

    @property
    def runs_dir(self) -> Path:
        return self.root / "runs"

    def curated_dir(self, recipe: str) -> Path:
        if not _NAME.match(recipe):
            raise WorkspaceError(f"invalid recipe name {recipe!r}")
        return self.root / "curated" / recipe

    def require_pool(self) -> list[Path]:
        shards = self.pool.shard_paths()
        if not shards:
            raise WorkspaceError(f"no scored pool in {self.root}: run `flywheel score SOURCE --workspace {self.root}`")
        return shards

    # Partition offsets per source, so several sources can share one pool without index clashes.
    def source_offset(self, source_key: str, n_partitions: int) -> int:
        path = self.pool_dir / "_sources.json"
        sources: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {}
        if source_key in sources:
            entry = sources[source_key]
            if entry["partitions"] != n_partitions:
                raise WorkspaceError(
                    f"source {source_key} now plans {n_partitions} partitions, the pool holds {entry['partitions']}: "
                    "the source changed since it was scored; score it into a new workspace"
                )
            return int(entry["first"])
        first = max((e["first"] + e["partitions"] for e in sources.values()), default=0)
        sources[source_key] = {"first": first, "partitions": n_partitions}
        write_json_atomic(path, sources)
        return first

    def curated_recipes(self) -> list[str]:
        base = self.root / "curated"
        return sorted(p.name for p in base.iterdir() if (p / "funnel.json").is_file()) if base.is_dir() else []
