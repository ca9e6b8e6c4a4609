"""Sample schema: the core columns every pool row carries and the registry of score columns.

Every column is declared exactly once, with dtype, unit and description, so that
`flywheel filters` and the docs are generated from the same source the writers use.
The core never imports a filter: filters declare their columns here through
:class:`ColumnRegistry`, and the pipeline asks the registry for the pool schema.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pyarrow as pa

# 2: `id` is a source-identity key (flywheel.ids.sample_id); content hashes moved to their own columns.
SCHEMA_VERSION = 2


@dataclass(frozen=True)
class Column:
    """One declared column: its name, Arrow type, unit and why it exists."""

    name: str
    dtype: pa.DataType
    unit: str
    description: str
    owner: str = "core"
    # True when the value is computed from the caption: with no caption in a pool such a column judges
    # nothing, and selection says so instead of letting its rule reject every row.
    from_caption: bool = False

    def field(self) -> pa.Field:
        """Arrow field carrying the unit and description, so any Parquet reader can show what a column means."""
        metadata = {"description": self.description, "unit": self.unit, "owner": self.owner}
        return pa.field(self.name, self.dtype, nullable=True, metadata=metadata)


CORE_COLUMNS: tuple[Column, ...] = (
    Column(
        "id",
        pa.string(),
        "hex",
        "Sample key, unique per input row and stable across runs: blake2b-128 of source kind, uri and edit "
        "source uri (never of the bytes; see content_hash).",
    ),
    Column("source", pa.string(), "", "Name of the ingested source (folder, parquet or webdataset root)."),
    Column("uri", pa.string(), "", "Where the sample came from; unique per input row."),
    Column("partition", pa.int32(), "", "Index of the pool shard (input partition) holding the row."),
    Column("image", pa.binary(), "bytes", "Encoded image bytes exactly as read (TI2I: the target image)."),
    Column("file_bytes", pa.int64(), "bytes", "Size of the encoded image."),
    Column("width", pa.int32(), "px", "Stored width from the header (before EXIF transpose); null if unreadable."),
    Column("height", pa.int32(), "px", "Stored height from the header; null if unreadable."),
    Column("format", pa.string(), "", "Container format found in the bytes (JPEG, PNG, ...); null if not an image."),
    Column("caption", pa.string(), "", "Caption (T2I) or edit instruction (TI2I) as ingested."),
    Column("task", pa.string(), "", "T2I (text to image) or TI2I (edit: source image + instruction -> image)."),
    Column("source_image", pa.binary(), "bytes", "TI2I only: encoded source image of the edit."),
    Column("source_uri", pa.string(), "", "TI2I only: where the source image came from."),
    Column("meta", pa.string(), "json", "Extra fields of the input record, as a JSON object."),
    Column(
        "content_hash",
        pa.string(),
        "hex",
        "blake2b-128 of image bytes, caption and edit source bytes: equal for byte-identical samples.",
    ),
    Column("image_sha256", pa.string(), "hex", "sha256 of the encoded image bytes; null when nothing was read."),
)

TASKS = ("T2I", "TI2I")
SCHEMA_METADATA = {"flywheel.schema_version": str(SCHEMA_VERSION)}


class ColumnRegistry:
    """Ordered registry of columns; a name may be declared only once."""

    def __init__(self, columns: Iterable[Column] = ()) -> None:
        self._columns: dict[str, Column] = {}
        for column in columns:
            self.add(column)

    def add(self, column: Column) -> None:
        if column.name in self._columns:
            other = self._columns[column.name]
            raise ValueError(f"column {column.name!r} declared twice (by {other.owner} and {column.owner})")
        self._columns[column.name] = column

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __getitem__(self, name: str) -> Column:
        return self._columns[name]

    def __iter__(self) -> Iterator[Column]:
        return iter(self._columns.values())

    def __len__(self) -> int:
        return len(self._columns)

    def schema(self) -> pa.Schema:
        return pa.schema([c.field() for c in self._columns.values()], metadata=SCHEMA_METADATA)


def core_schema() -> pa.Schema:
    return ColumnRegistry(CORE_COLUMNS).schema()
