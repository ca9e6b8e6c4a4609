"""Self-contained training shards of a selection: `flywheel export --recipe NAME --format parquet|webdataset`.

A selection's curated shards are what Flywheel's own trainer reads; other readers (a WebDataset loader, a
training cluster without the workspace) want files that stand alone. Export writes them from the verified
curated store, one output shard per curated shard, each atomically, so an interrupted export resumes and
an existing complete shard is never rewritten:

- `parquet`: the kept rows with every column (image bytes included), through the shard store (markers and
  manifest beside the shards in `_meta/`, so the shard folder holds only Parquet);
- `webdataset`: POSIX tar shards `shard-NNNNN.tar`; each sample is `<key>.<ext>` (the image bytes exactly as
  read, extension from the detected format), `<key>.txt` (the caption) and `<key>.json` (every scalar column),
  plus `<key>.source.<ext>` for edit samples. Keys are the row's `id`, made tar-safe.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pyarrow as pa

from flywheel.errors import UserError
from flywheel.store import fs as storage
from flywheel.store.images import BYTE_COLUMNS, POOL_ROW, attach_bytes
from flywheel.store.shards import ShardStore, file_sha256, write_json_atomic
from flywheel.workspace import Workspace

ExportFormat = Literal["parquet", "webdataset"]
FORMATS: tuple[str, ...] = ("parquet", "webdataset")
_EXT = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif", "MPO": "jpg"}
_KEY_SAFE = re.compile(r"[^A-Za-z0-9_-]")


class ExportError(UserError):
    pass


@dataclass(frozen=True)
class ExportResult:
    recipe: str
    format: str
    out_dir: Path
    shards_written: int
    shards_skipped: int
    rows: int


def export(
    workspace: Workspace,
    recipe: str,
    fmt: str,
    out_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ExportResult:
    """Export the selection `recipe` as `fmt` into `out_dir` (default: the workspace's exports folder)."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; use one of {', '.join(FORMATS)}")
    workspace.require_selection(recipe)
    source = workspace.curated_store(recipe)
    infos = source.verify()  # refuses a damaged selection (checksums against markers)
    out = (out_dir or workspace.export_dir(recipe, fmt)).expanduser().resolve()
    if out == source.root.resolve() or source.root.resolve() in out.parents:
        raise ExportError(f"export folder {out} is inside the selection {source.root}; choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    # The selection's identity: its shards' checksums. A re-selection changes it, so every shard is redone.
    fingerprint = f"{recipe}:" + hashlib.sha256(",".join(i.sha256 for i in infos).encode()).hexdigest()[:16]
    written = skipped = rows = 0
    for done, info in enumerate(infos, start=1):
        shard = source.root / info.shard
        table = attach_bytes(storage.read_table(shard), shard).drop_columns([POOL_ROW.name])  # exports hold the bytes
        rows += table.num_rows
        if fmt == "parquet":
            store = ShardStore(out, meta_root=out / "_meta")
            if store.completed(info.index, fingerprint) is not None:
                skipped += 1
            else:
                store.write(info.index, table, fingerprint=fingerprint)
                written += 1
        elif _write_tar(out, info.index, table, fingerprint):
            written += 1
        else:
            skipped += 1
        if progress is not None:
            progress(done, len(infos))
    _drop_stale(out, fmt, {i.index for i in infos})
    manifest = {"recipe": recipe, "format": fmt, "rows": rows, "shards": len(infos), "fingerprint": fingerprint}
    if fmt == "parquet":
        ShardStore(out, meta_root=out / "_meta").write_manifest({"export": manifest})
    else:
        write_json_atomic(out / "_manifest.json", manifest)
    return ExportResult(recipe, fmt, out, written, skipped, rows)


def _drop_stale(out: Path, fmt: str, keep: set[int]) -> None:
    """Remove shards (and markers) an earlier export of another selection left under indexes no longer kept."""
    if fmt == "parquet":
        pattern, markers = "part-*.parquet", out / "_meta" / "_markers"
    else:
        pattern, markers = "shard-*.tar", out / "_markers"
    for path in out.glob(pattern):
        index = int(path.name.split("-")[1].split(".")[0])
        if index not in keep:
            path.unlink()
            (markers / f"{path.name.split('.')[0]}.json").unlink(missing_ok=True)


def _write_tar(out: Path, index: int, table: pa.Table, fingerprint: str) -> bool:
    """Write `shard-NNNNN.tar` atomically; False when a complete one with this fingerprint exists."""
    final = out / f"shard-{index:05d}.tar"
    marker = out / "_markers" / f"shard-{index:05d}.json"
    if final.is_file() and marker.is_file():
        recorded = json.loads(marker.read_text(encoding="utf-8"))
        if recorded.get("fingerprint") == fingerprint and recorded.get("sha256") == file_sha256(final):
            return False
    scalar = [f.name for f in table.schema if not pa.types.is_binary(f.type) and not pa.types.is_large_binary(f.type)]
    seen: set[str] = set()
    with storage.atomic_writer(final) as fh, tarfile.open(fileobj=fh, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for row in table.to_pylist():
            key = _tar_key(str(row["id"]), seen)
            ext = _EXT.get(str(row.get("format") or ""), "bin")
            if row.get("image") is not None:
                _add(tar, f"{key}.{ext}", row["image"])
            if row.get("source_image") is not None:
                _add(tar, f"{key}.source.{_sniff_ext(row['source_image'])}", row["source_image"])
            _add(tar, f"{key}.txt", (row.get("caption") or "").encode("utf-8"))
            meta = {name: row[name] for name in scalar if name not in BYTE_COLUMNS}
            _add(tar, f"{key}.json", json.dumps(meta, ensure_ascii=False, default=str).encode("utf-8"))
    write_json_atomic(marker, {"rows": table.num_rows, "sha256": file_sha256(final), "fingerprint": fingerprint})
    return True


def _tar_key(row_id: str, seen: set[str]) -> str:
    """A WebDataset key: no dots (they split key from extension) or path separators; unique in the shard."""
    key = _KEY_SAFE.sub("_", row_id)[:120] or "sample"
    base, n = key, 1
    while key in seen:
        n += 1
        key = f"{base}_{n}"
    seen.add(key)
    return key


def _sniff_ext(data: bytes) -> str:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return _EXT.get(im.format or "", "bin")
    except Exception:
        return "bin"


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # deterministic shards: same selection, same bytes
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))
