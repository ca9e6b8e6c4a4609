"""Parquet shard store: atomic shard writes, per-shard completion markers, a consolidated manifest.

Write protocol (crash-safe at every step):
1. the shard is written to `part-NNNNN.parquet.tmp-<uuid>`, flushed and fsynced;
2. it is renamed to `part-NNNNN.parquet` (atomic on POSIX);
3. a marker `_markers/part-NNNNN.json` (rows, bytes, sha256, fingerprint, stats) is written
   the same way. A shard counts as complete only when its marker exists and agrees with
   the file (size and sha256, so a truncated or bit-flipped shard is caught); a shard without
   a marker is redone, which overwrites it.
4. `_manifest.json` is rebuilt from the markers (tmp + rename) after each run.
Only one process writes a store at a time (the driver), so markers need no locking.
On an object store (`s3://`, flywheel.store.fs) steps 1-2 are one PUT of the final key, which is atomic.

Markers and manifest live under `meta_root` (default: the shard folder itself). A store whose
shards must be the only files in their folder (curated selections, which any Parquet reader
opens as a dataset) keeps its bookkeeping in a sibling folder instead.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flywheel.errors import MissingInput, RunFailed, UserError
from flywheel.schema import SCHEMA_VERSION
from flywheel.store.fs import ObjectPath, StoragePath, replace_bytes, storage_path

SHARD_GLOB = "part-*.parquet"


def shard_name(index: int) -> str:
    return f"part-{index:05d}.parquet"


@dataclass
class ShardInfo:
    shard: str
    index: int
    rows: int
    bytes: int
    sha256: str
    fingerprint: str
    stats: dict[str, Any] = field(default_factory=dict)
    # What produced the columns besides the input (pool: filter set + model config); "" in older markers.
    scoring: str = ""


def write_bytes_atomic(path: StoragePath, data: bytes) -> None:
    """Write to a temporary name, fsync, then rename (one PUT on an object store): readers see the old
    file or the new one, never half."""
    replace_bytes(path, data)


def write_json_atomic(path: StoragePath, obj: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


def file_sha256(path: StoragePath) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def column_stats(table: pa.Table) -> dict[str, Any]:
    """Small per-shard statistics: null counts for every column, min/mean/max for numeric ones."""
    stats: dict[str, Any] = {}
    for name in table.column_names:
        col = table.column(name)
        entry: dict[str, Any] = {"nulls": col.null_count}
        if (pa.types.is_integer(col.type) or pa.types.is_floating(col.type)) and col.null_count < len(col):
            mm = pc.min_max(col)
            entry.update(min=mm["min"].as_py(), max=mm["max"].as_py(), mean=pc.mean(col).as_py())
        elif pa.types.is_string(col.type) and name.endswith("_reason"):
            counts = pc.value_counts(col.drop_null()).to_pylist()
            entry["values"] = {c["values"]: c["counts"] for c in counts}
        stats[name] = entry
    return stats


class ShardStore:
    """A folder of `part-NNNNN.parquet` shards with markers and a manifest."""

    def __init__(self, root: str | StoragePath, meta_root: str | StoragePath | None = None) -> None:
        self.root = storage_path(root)
        self.meta_root = storage_path(meta_root) if meta_root is not None else self.root
        self.markers = self.meta_root / "_markers"
        # Shards `completed` found not to match their markers (index -> what is wrong), for the caller to report.
        self.damaged: dict[int, str] = {}

    @property
    def manifest_path(self) -> StoragePath:
        return self.meta_root / "_manifest.json"

    def marker_path(self, index: int) -> StoragePath:
        return self.markers / f"part-{index:05d}.json"

    def shard_path(self, index: int) -> StoragePath:
        return self.root / shard_name(index)

    def write(
        self, index: int, table: pa.Table, fingerprint: str, *, row_group_size: int = 64, scoring: str = ""
    ) -> ShardInfo:
        """Write one shard atomically and then its completion marker."""
        self.root.mkdir(parents=True, exist_ok=True)
        self.markers.mkdir(parents=True, exist_ok=True)
        final = self.shard_path(index)
        if isinstance(final, ObjectPath):  # one PUT of the final key; size and hash from the bytes sent
            buf = io.BytesIO()
            pq.write_table(table, buf, row_group_size=row_group_size, compression="zstd")
            data = buf.getvalue()
            final.write_bytes(data)
            size, digest = len(data), hashlib.sha256(data).hexdigest()
        else:
            tmp = final.with_name(f"{final.name}.tmp-{uuid.uuid4().hex}")
            pq.write_table(table, tmp, row_group_size=row_group_size, compression="zstd")
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
            size, digest = final.stat().st_size, file_sha256(final)
        info = ShardInfo(
            shard=final.name,
            index=index,
            rows=table.num_rows,
            bytes=size,
            sha256=digest,
            fingerprint=fingerprint,
            stats=column_stats(table),
            scoring=scoring,
        )
        write_json_atomic(self.marker_path(index), asdict(info))
        return info

    @property
    def pieces_dir(self) -> StoragePath:
        """Parts of a shard written by different workers, waiting to be merged (see `write_piece`)."""
        return self.root / "_pieces"

    def write_piece(self, index: int, table: pa.Table) -> StoragePath:
        """Write part of shard `index` atomically under `_pieces/`; it is not a shard until merged and written.

        A crash leaves only pieces, which `clean_temporaries` removes: the partition is then redone whole.
        """
        self.pieces_dir.mkdir(parents=True, exist_ok=True)
        final = self.pieces_dir / f"part-{index:05d}.{uuid.uuid4().hex}.parquet"
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd")
        write_bytes_atomic(final, buf.getvalue())
        return final

    def completed(self, index: int, fingerprint: str | None = None, scoring: str | None = None) -> ShardInfo | None:
        """The shard's info if it is complete (marker present, size and sha256 agree, fingerprint matches).

        A shard whose bytes do not match its marker (truncated, bit-flipped) is not complete:
        None is returned and `self.damaged` names it, so the caller can say so and redo it.
        A shard whose `scoring` differs (other filters or model config) is not complete: it is redone.
        A different input `fingerprint` is an error, because the source itself changed.
        """
        marker = self.marker_path(index)
        shard = self.shard_path(index)
        if not marker.is_file() or not shard.is_file():
            return None
        info = ShardInfo(**json.loads(marker.read_text(encoding="utf-8")))
        problem = self.check(info)
        if problem:
            self.damaged[index] = problem
            return None
        if fingerprint is not None and info.fingerprint != fingerprint:
            raise StaleShardError(
                f"{shard} was written from different input (fingerprint {info.fingerprint} != {fingerprint}); "
                "the source changed since this pool was scored. Score into a new workspace."
            )
        if scoring is not None and info.scoring != scoring:
            return None
        return info

    @property
    def verified_path(self) -> StoragePath:
        """Which shard files were hashed and found to match their markers, keyed by what `stat` said then."""
        return self.markers / "_verified.json"

    def check(self, info: ShardInfo, verified: dict[str, list[Any]] | None = None) -> str | None:
        """None when the shard file matches its marker; else one line naming the shard and the mismatch.

        With `verified` (see `verify`), a file whose size, modification time and inode are what they were when
        it last hashed right is trusted without hashing again; one that hashes right now is recorded there.
        """
        shard = self.root / info.shard
        try:
            st = shard.stat()
        except OSError as e:
            return f"{shard}: unreadable ({e.strerror or e})"
        if st.st_size != info.bytes:
            return f"{shard}: {st.st_size} bytes, its marker recorded {info.bytes} (truncated or rewritten)"
        seen = [st.st_size, st.st_mtime_ns, st.st_ino, info.sha256]
        if verified is not None and verified.get(info.shard) == seen:
            return None
        digest = file_sha256(shard)
        if digest != info.sha256:
            return f"{shard}: sha256 {digest[:12]}... does not match the recorded {info.sha256[:12]}... (corrupted)"
        if verified is not None:
            verified[info.shard] = seen
        return None

    def verify(self, *, rehash: bool = False) -> list[ShardInfo]:
        """Every complete shard, checked against its marker; CorruptShardError names the first bad one.

        A shard file unchanged since it last hashed right (same size, mtime and inode: any rewrite through
        this store is a new file) is not hashed again, so re-selecting a large pool costs metadata, not a
        read of every pool byte. `rehash` hashes every file regardless (damage that leaves `stat` unchanged,
        such as a bit flip on disk, is only caught that way).
        """
        infos = list(self.infos())
        path = self.verified_path
        before: dict[str, list[Any]] = {}
        if not rehash and path.is_file():
            before = json.loads(path.read_text(encoding="utf-8"))
        names = {i.shard for i in infos}
        verified = {k: v for k, v in before.items() if k in names}
        for info in infos:
            problem = self.check(info, verified)
            if problem:
                raise CorruptShardError(problem)
        if verified != before:
            write_json_atomic(path, verified)
        return infos

    def infos(self) -> Iterator[ShardInfo]:
        if not self.markers.is_dir():
            return
        for marker in sorted(self.markers.glob("part-*.json")):
            info = ShardInfo(**json.loads(marker.read_text(encoding="utf-8")))
            if (self.root / info.shard).is_file():
                yield info

    def clean_temporaries(self) -> int:
        """Remove half-written files left by a crash."""
        removed = 0
        metas = list(self.meta_root.glob("*.tmp-*")) if self.meta_root != self.root else []
        pieces = list(self.pieces_dir.glob("*")) if self.pieces_dir.is_dir() else []
        for tmp in list(self.root.glob("*.tmp-*")) + list(self.markers.glob("*.tmp-*")) + metas + pieces:
            tmp.unlink(missing_ok=True)
            removed += 1
        return removed

    def write_manifest(self, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        shards = [asdict(i) for i in self.infos()]
        manifest = {
            "schema_version": SCHEMA_VERSION,
            "shards": shards,
            "rows": sum(s["rows"] for s in shards),
            "bytes": sum(s["bytes"] for s in shards),
            **(extra or {}),
        }
        write_json_atomic(self.manifest_path, manifest)
        return manifest

    def read_manifest(self) -> dict[str, Any]:
        path = self.manifest_path
        if not path.is_file():
            raise MissingInput(f"no manifest at {path}: nothing has been written here yet")
        return json.loads(path.read_text(encoding="utf-8"))

    def shard_paths(self) -> list[StoragePath]:
        return [self.root / i.shard for i in self.infos()]


class StaleShardError(UserError):
    """A completed shard belongs to other input than the current plan."""


class CorruptShardError(RunFailed):
    """A shard's bytes differ from the size/sha256 its marker recorded when it was written."""
