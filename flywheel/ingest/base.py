"""Ingest contract: a source is planned into deterministic partitions, each read independently.

A partition is the unit of work and of resume: partition i becomes pool shard
`part-{i:05d}.parquet`. Plans are deterministic for unchanged input, and each partition
carries a fingerprint of its members, so a re-run can tell a completed shard of the same
input from a stale one.
"""

from __future__ import annotations

import hashlib
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from flywheel.errors import UserError


class SourceError(UserError):
    """The source cannot be read as given (missing path, unknown layout); the message says why."""


@dataclass(frozen=True)
class RawSample:
    """One input row as read, before decoding. `image` None with `read_error` set means unreadable."""

    uri: str
    image: bytes | None
    caption: str | None
    task: str = "T2I"
    source_image: bytes | None = None
    source_uri: str | None = None
    meta: dict[str, Any] | None = None
    read_error: str | None = None

    def meta_json(self) -> str | None:
        return json.dumps(self.meta, sort_keys=True, ensure_ascii=False, default=str) if self.meta else None


@dataclass(frozen=True)
class PartitionSpec:
    """What one partition holds: `files` under `root`, and a [start, stop) row range for row-based kinds."""

    kind: str
    source: str
    root: str
    local_index: int
    files: tuple[str, ...]
    start: int = 0
    stop: int = -1
    fingerprint: str = ""
    options: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def option(self, key: str, default: str | None = None) -> str | None:
        return dict(self.options).get(key, default)


def fingerprint(parts: Sequence[object]) -> str:
    h = hashlib.blake2b(digest_size=12)
    for part in parts:
        h.update(repr(part).encode("utf-8"))
        h.update(b"\x00")
    return h.hexdigest()


def list_files(root: str, suffix: str) -> list[str]:
    """Sorted root-relative paths of non-hidden files ending in `suffix` (any case).

    Hidden folders are skipped and directory symlinks are not followed, so a source never reads outside its
    root by walking.
    """
    out: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        out += [
            os.path.relpath(os.path.join(dirpath, fn), root).replace(os.sep, "/")
            for fn in filenames
            if fn.lower().endswith(suffix) and not fn.startswith(".")
        ]
    return sorted(out)


def pop_str(fields: dict[str, Any], keys: tuple[str, ...]) -> str | None:
    """Pop and return the first string value among `keys` (stripped); non-strings stay in meta."""
    for key in keys:
        if isinstance(fields.get(key), str):
            return str(fields.pop(key)).strip()
    return None


def decode_text(data: bytes, name: str) -> tuple[str | None, str | None]:
    """A sidecar's UTF-8 text (BOM dropped, stripped), or the error to record on the sample."""
    try:
        return data.decode("utf-8-sig").strip(), None
    except UnicodeDecodeError as e:
        return None, f"{name} is not UTF-8: {e}"


class Source(ABC):
    """A readable input. `plan` is cheap (listing, headers); `read` does the I/O of one partition."""

    kind: str

    def __init__(self, root: str, name: str | None = None) -> None:
        self.root = root
        self.name = name or root.rstrip("/").split("/")[-1]

    def container_files(self, rows_per_partition: int, suffix: str) -> tuple[str, list[str]]:
        """(root folder, root-relative files) of a source given as one `suffix` file or a folder of them.

        Parquet and WebDataset sources share this planning preamble, with its errors.
        """
        if rows_per_partition < 1:
            raise UserError(f"rows_per_partition must be >= 1, got {rows_per_partition}")
        if not os.path.exists(self.root):
            raise SourceError(f"{self.kind} source does not exist: {self.root}")
        path = os.path.abspath(self.root)
        if os.path.isdir(path):
            return path, list_files(path, suffix)
        if path.lower().endswith(suffix):
            return os.path.dirname(path), [os.path.basename(path)]
        raise SourceError(f"{self.kind} source must be a {suffix} file or a directory: {self.root}")

    @abstractmethod
    def plan(self, rows_per_partition: int) -> list[PartitionSpec]:
        """Split the source into deterministic partitions of about `rows_per_partition` rows."""

    @staticmethod
    @abstractmethod
    def read(spec: PartitionSpec) -> Iterator[RawSample]:
        """Yield the partition's samples in a deterministic order. Bad rows yield RawSample with read_error."""
