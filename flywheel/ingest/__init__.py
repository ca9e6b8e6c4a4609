"""Ingest readers: folder, parquet and webdataset sources behind one `open_source` entry point.

Detection (`open_source`), in order:
  * missing path -> SourceError;
  * a `.parquet` file -> ParquetSource; a `.tar` file -> WebDatasetSource; any other file ->
    SourceError (a single image is not a source);
  * a directory whose (non-hidden) tree holds `.tar` files -> WebDatasetSource. Tars win over
    parquet because img2dataset's webdataset output writes `.parquet` metadata (no image
    bytes) next to its shards;
  * a directory holding `.parquet` files -> ParquetSource;
  * any other directory -> FolderSource (possibly empty: it then plans no partitions).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from flywheel.ingest.base import PartitionSpec, RawSample, Source, SourceError, fingerprint
from flywheel.ingest.folder import FolderSource
from flywheel.ingest.parquet import ParquetSource
from flywheel.ingest.webdataset import WebDatasetSource

SOURCE_KINDS: dict[str, type[Source]] = {
    FolderSource.kind: FolderSource,
    ParquetSource.kind: ParquetSource,
    WebDatasetSource.kind: WebDatasetSource,
}

__all__ = [
    "SOURCE_KINDS",
    "FolderSource",
    "ParquetSource",
    "PartitionSpec",
    "RawSample",
    "Source",
    "SourceError",
    "WebDatasetSource",
    "detect_kind",
    "fingerprint",
    "open_source",
    "read_partition",
]


def detect_kind(path: str) -> str:
    """The source kind `path` looks like; SourceError when it does not exist or is not a source."""
    if not os.path.exists(path):
        raise SourceError(f"source path does not exist: {path}")
    lower = path.lower()
    if os.path.isfile(path):
        if lower.endswith(".parquet"):
            return ParquetSource.kind
        if lower.endswith(".tar"):
            return WebDatasetSource.kind
        raise SourceError(f"not a source: {path} (expected a .parquet file, a .tar file or a directory)")
    if not os.path.isdir(path):
        raise SourceError(f"not a file or directory: {path}")
    has_parquet = False
    for _dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        names = [f.lower() for f in filenames if not f.startswith(".")]
        if any(n.endswith(".tar") for n in names):
            return WebDatasetSource.kind
        has_parquet = has_parquet or any(n.endswith(".parquet") for n in names)
    return ParquetSource.kind if has_parquet else FolderSource.kind


def open_source(path: str, name: str | None = None) -> Source:
    """Open `path` as the source kind it looks like (see module docstring for the rules)."""
    return SOURCE_KINDS[detect_kind(path)](path, name)


def read_partition(spec: PartitionSpec) -> Iterator[RawSample]:
    """Read one planned partition with the reader of its kind (works in any worker process)."""
    try:
        reader = SOURCE_KINDS[spec.kind]
    except KeyError:
        raise SourceError(f"unknown source kind {spec.kind!r}; known: {sorted(SOURCE_KINDS)}") from None
    return reader.read(spec)
