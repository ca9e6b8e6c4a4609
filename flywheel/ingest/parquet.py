"""Parquet source: one .parquet file or a directory tree of them (img2dataset / HF datasets layouts).

Column conventions, detected per file from the footer schema (first match wins):

* image: `jpg`, `jpeg`, `png`, `webp`, `image` holding bytes (binary), a struct with
  `bytes`/`path` fields (HF datasets Image feature: bytes win, path is the fallback), or a
  string path; else a path column `path`, `image_path`, `file_name` (HF imagefolder
  metadata), `url`. Paths are relative to the parquet file's folder and must resolve inside
  the source root unless the source is built with `allow_paths_outside_root=True`, so a
  hostile parquet cannot make us read arbitrary files. Remote URLs are not fetched: the row
  gets a read_error.
* caption: `caption`, `txt`, `text`.
* TI2I: when both a source column (`source_image` bytes/struct/path, or `source_image_path`)
  and `instruction` exist, every row of the file is TI2I and the instruction is the caption.
* Every other scalar column (strings, numbers, bools, timestamps; `key` included) goes to
  `meta`; binary and nested columns are not copied.

A file with no image column is an unknown layout: SourceError at plan. A file whose footer
cannot be read becomes a single-row partition whose row carries the error, so one corrupt
shard does not stop the run. uri = f"{abs file}#row={i}" (i = row index within the file,
unique even when `key` repeats).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from flywheel.ingest.base import (
    PartitionSpec,
    RawSample,
    Source,
    SourceError,
    fingerprint,
)
from flywheel.ingest.folder import is_inside, is_regular_file, read_local_file

log = logging.getLogger(__name__)

IMAGE_COLUMNS = ("jpg", "jpeg", "png", "webp", "image")
PATH_COLUMNS = ("path", "image_path", "file_name", "url")
CAPTION_COLUMNS = ("caption", "txt", "text")
SOURCE_COLUMNS = ("source_image", "source_image_path")
INSTRUCTION_COLUMN = "instruction"
BATCH_ROWS = 64  # rows per record batch: image columns are large, keep batches small
READ_BUFFER = 1 << 20  # stream column chunks page by page instead of reading them whole


def _mode(dtype: pa.DataType) -> str | None:
    """How a column holds an image: 'bytes', 'struct' (HF bytes/path) or 'path'; None if unusable."""
    if pa.types.is_binary(dtype) or pa.types.is_large_binary(dtype) or pa.types.is_fixed_size_binary(dtype):
        return "bytes"
    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype):
        return "path"
    if pa.types.is_struct(dtype):
        names = {dtype.field(i).name for i in range(dtype.num_fields)}
        if names & {"bytes", "path"}:
            return "struct"
    return None


def _is_scalar(dtype: pa.DataType) -> bool:
    if pa.types.is_dictionary(dtype):
        return _is_scalar(dtype.value_type)
    return not (
        pa.types.is_nested(dtype)
        or pa.types.is_binary(dtype)
        or pa.types.is_large_binary(dtype)
        or pa.types.is_fixed_size_binary(dtype)
    )


@dataclass(frozen=True)
class Layout:
    """Which columns of one file mean what."""

    image: str
    image_mode: str
    caption: str | None
    source: str | None = None
    source_mode: str | None = None
    instruction: str | None = None
    meta: tuple[str, ...] = field(default_factory=tuple)

    @property
    def columns(self) -> list[str]:
        used = [self.image, self.caption, self.source, self.instruction, *self.meta]
        return list(dict.fromkeys(c for c in used if c is not None))


def detect_layout(schema: pa.Schema, where: str) -> Layout:
    """Map a file's columns to roles; SourceError when no image column is recognisable."""
    names = set(schema.names)
    image = image_mode = None
    for col in (*IMAGE_COLUMNS, *PATH_COLUMNS):
        mode = _mode(schema.field(col).type) if col in names else None
        if mode is not None and (col in IMAGE_COLUMNS or mode == "path"):
            image, image_mode = col, mode
            break
    if image is None or image_mode is None:
        raise SourceError(
            f"{where}: no image column; expected one of {IMAGE_COLUMNS} (bytes, HF struct or path) "
            f"or a path column {PATH_COLUMNS}; found {schema.names}"
        )
    caption = next((c for c in CAPTION_COLUMNS if c in names), None)
    source = next((c for c in SOURCE_COLUMNS if c in names and _mode(schema.field(c).type)), None)
    instruction = INSTRUCTION_COLUMN if INSTRUCTION_COLUMN in names else None
    if (source is None) != (instruction is None):
        log.warning("%s: TI2I needs both a source image column and %r; reading as T2I", where, "instruction")
        source = instruction = None
    used = {image, caption, source, instruction}
    meta = tuple(f.name for f in schema if f.name not in used and _is_scalar(f.type))
    return Layout(
        image=image,
        image_mode=image_mode,
        caption=caption,
        source=source,
        source_mode=_mode(schema.field(source).type) if source else None,
        instruction=instruction,
        meta=meta,
    )


class ParquetSource(Source):
    """Parquet rows; partitions are row ranges within one file, planned from footer row counts."""

    kind = "parquet"

    def __init__(self, root: str, name: str | None = None, allow_paths_outside_root: bool = False) -> None:
        super().__init__(root, name)
        self.allow_paths_outside_root = allow_paths_outside_root

    def plan(self, rows_per_partition: int) -> list[PartitionSpec]:
        root, files = self.container_files(rows_per_partition, ".parquet")
        options = (("allow_paths_outside_root", "1" if self.allow_paths_outside_root else "0"),)
        specs: list[PartitionSpec] = []
        root_real = os.path.realpath(root)
        for rel in files:
            full = os.path.join(root, rel)
            size = os.lstat(full).st_size
            try:
                # A FIFO would block the footer read forever; a link out of the root would read outside it.
                if not is_regular_file(full):
                    raise OSError(f"not a regular file: {full}")
                if not self.allow_paths_outside_root and not is_inside(os.path.realpath(full), root_real):
                    raise OSError(f"path resolves outside the source root: {full}")
                size = os.path.getsize(full)
                with pq.ParquetFile(full) as pf:
                    schema, num_rows = pf.schema_arrow, pf.metadata.num_rows
            except (pa.ArrowException, OSError) as e:
                error = f"unreadable parquet file: {type(e).__name__}: {e}"
                ranges: list[tuple[int, int]] = [(0, 1)]
                file_options = (*options, ("error", error))
                num_rows = -1
            else:
                detect_layout(schema, full)
                starts = range(0, num_rows, rows_per_partition)
                ranges = [(s, min(s + rows_per_partition, num_rows)) for s in starts]
                file_options = options
            for start, stop in ranges:
                specs.append(
                    PartitionSpec(
                        kind=self.kind,
                        source=self.name,
                        root=root,
                        local_index=len(specs),
                        files=(rel,),
                        start=start,
                        stop=stop,
                        options=file_options,
                        fingerprint=fingerprint([self.kind, rel, size, num_rows, start, stop, file_options]),
                    )
                )
        return specs

    @staticmethod
    def read(spec: PartitionSpec) -> Iterator[RawSample]:
        (rel,) = spec.files
        path = os.path.join(spec.root, rel)
        uri = os.path.abspath(path)
        error = spec.option("error")
        if error is not None:
            yield RawSample(uri=uri, image=None, caption=None, read_error=error)
            return
        root_real = None if spec.option("allow_paths_outside_root") == "1" else os.path.realpath(spec.root)
        row = spec.start
        error = "row missing from file (changed since plan?)"
        try:
            with pq.ParquetFile(path, buffer_size=READ_BUFFER) as pf:
                layout = detect_layout(pf.schema_arrow, path)
                groups, row = _row_groups(pf.metadata, spec.start, spec.stop)
                batches = pf.iter_batches(batch_size=BATCH_ROWS, row_groups=groups, columns=layout.columns)
                for batch in batches:
                    values = {name: batch.column(name).to_pylist() for name in layout.columns}
                    for j in range(batch.num_rows):
                        if spec.start <= row < spec.stop:
                            cells = {k: v[j] for k, v in values.items()}
                            yield _sample(uri, row, cells, layout, path, root_real)
                        row += 1
                    if row >= spec.stop:
                        return
        except (pa.ArrowException, OSError, SourceError) as e:
            error = f"parquet read failed: {type(e).__name__}: {e}"
        # Corrupt past the footer, or shorter than planned: every row not yet read says so.
        for i in range(max(row, spec.start), spec.stop):
            yield RawSample(uri=f"{uri}#row={i}", image=None, caption=None, read_error=error)


def _row_groups(meta: pq.FileMetaData, start: int, stop: int) -> tuple[list[int], int]:
    """Row groups overlapping [start, stop) and the file row index of the first one."""
    groups, first, offset = [], -1, 0
    for g in range(meta.num_row_groups):
        n = meta.row_group(g).num_rows
        if offset < stop and offset + n > start:
            groups.append(g)
            first = offset if first < 0 else first
        offset += n
    return groups, max(first, 0)


def _image_value(value: Any, mode: str, base: str, root_real: str | None) -> tuple[bytes | None, str | None, str]:
    """Resolve an image cell to (bytes, error, origin) where origin is the path read or ''."""
    if value is None:
        return None, "image value is null", ""
    if mode == "bytes":
        return bytes(value), None, ""
    if mode == "struct":
        if value.get("bytes") is not None:
            return bytes(value["bytes"]), None, ""
        if not value.get("path"):
            return None, "image struct has neither bytes nor path", ""
        value = value["path"]
    ref = str(value)
    if "://" in ref:
        return None, f"remote url not fetched (download it first): {ref}", ref
    full = os.path.normpath(os.path.join(base, ref))
    data, err = read_local_file(full, root_real)
    return data, err, full


def _sample(uri: str, i: int, row: dict[str, Any], layout: Layout, path: str, root_real: str | None) -> RawSample:
    base = os.path.dirname(os.path.abspath(path))
    row_uri = f"{uri}#row={i}"
    image, read_error, _ = _image_value(row[layout.image], layout.image_mode, base, root_real)
    caption_col = layout.instruction or layout.caption
    caption = row.get(caption_col) if caption_col else None
    meta = {k: row[k] for k in layout.meta if row.get(k) is not None}
    if layout.instruction and layout.caption and row.get(layout.caption) is not None:
        meta[layout.caption] = row[layout.caption]  # the plain caption of an edit row is kept
    task, source_image, source_uri = "T2I", None, None
    if layout.source and layout.source_mode:
        task = "TI2I"
        source_image, src_err, origin = _image_value(row[layout.source], layout.source_mode, base, root_real)
        source_uri = origin or f"{row_uri}&column={layout.source}"
        if src_err:
            read_error = read_error or f"edit source: {src_err}"
    return RawSample(
        uri=row_uri,
        image=image,
        caption=None if caption is None else str(caption),
        task=task,
        source_image=source_image,
        source_uri=source_uri,
        meta=meta or None,
        read_error=read_error,
    )
