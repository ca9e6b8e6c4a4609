"""Folder source: a directory tree of image files with optional same-stem caption sidecars.

Conventions (documented here because plan and read must agree on them):

* Images: extensions in IMAGE_EXTENSIONS, case-insensitive. The extension is trusted only to
  pick the file; garbage or zero-byte content still becomes a sample, decoding flags it later.
* Sidecars share the image's stem (`a/b.jpg` -> `a/b.txt`, `a/b.json`); both may exist.
  Caption precedence: `.txt` text (stripped), else JSON "caption", else JSON "text". JSON
  must be an object; its unconsumed keys go to `meta`. Invalid JSON never fails the row: it
  becomes `meta["sidecar_error"]` (caption then comes from `.txt` if present, else None).
* Edit triples: a JSON sidecar {"task": "TI2I", "source": "<rel path>", "instruction": "..."}
  makes its image a TI2I sample whose target is the image itself and whose caption is the
  instruction. "source" is resolved against the sidecar's folder first and against the
  root second, and must stay inside the root. Files referenced as an edit source are not
  samples of their own, unless they are themselves TI2I targets (edit chains keep every edit).
  A missing or unreadable source keeps the target bytes and sets `read_error`.
* Hidden files and anything under a dot-directory are skipped. Directory symlinks are never
  followed (cycles, duplicates); file symlinks are followed only when they resolve inside
  the root, so a source can never read outside its root. A symlink leading outside the root
  is still a row (counted in `rows in`), with a read_error saying why it was not read.
* Only regular files are read: a FIFO, socket or device named `x.jpg` becomes a row with a
  read_error (opening is non-blocking, so a FIFO with no writer cannot hang the run), and
  every read is bounded by a size limit.
* An edit whose source escapes the root, is missing or unreadable keeps the target bytes and
  gets a read_error, which rejects the row with that reason even when the target decodes.
* uri = absolute path of the image (not resolved through symlinks, so it names what the
  user listed); source_uri = absolute path of the edit source.
"""

from __future__ import annotations

import json
import logging
import os
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flywheel.errors import UserError
from flywheel.ingest.base import (
    PartitionSpec,
    RawSample,
    Source,
    SourceError,
    decode_text,
    fingerprint,
    pop_str,
)

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff"})
# Same bound as imaging.DecodeLimits.max_bytes: larger inputs are refused before being read.
MAX_FILE_BYTES = 256 * 1024 * 1024
MAX_SIDECAR_BYTES = 1024 * 1024
CAPTION_KEYS = ("caption", "text")


def is_inside(path_real: str, root_real: str) -> bool:
    """True when the resolved `path_real` is `root_real` or below it."""
    return os.path.commonpath([path_real, root_real]) == root_real


def read_local_file(
    path: str, root_real: str | None, max_bytes: int = MAX_FILE_BYTES
) -> tuple[bytes | None, str | None]:
    """Read a whole file, bounded; return (bytes, None) or (None, reason). Never raises for I/O.

    With `root_real` set, the file is refused unless it resolves inside that root, so
    symlinks and `..` cannot lead outside the source.
    """
    real = os.path.realpath(path)
    if root_real is not None and not is_inside(real, root_real):
        return None, f"path resolves outside the source root: {path}"
    try:
        # O_NONBLOCK: opening a FIFO with no writer returns at once instead of blocking forever;
        # fstat on the opened descriptor then refuses anything that is not a regular file (no race).
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError as e:
        return None, f"{type(e).__name__}: {e.strerror or e}"
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            return None, f"not a regular file ({_kind_of(mode)}): {path}"
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as e:
        return None, f"{type(e).__name__}: {e.strerror or e}"
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        return None, f"file larger than {max_bytes} bytes: {path}"
    return data, None


def _kind_of(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "fifo"),
        (stat.S_ISSOCK, "socket"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISDIR, "directory"),
    ):
        if test(mode):
            return name
    return "special file"


def is_regular_file(path: str) -> bool:
    """True for a regular file (following symlinks); False for FIFOs, devices, sockets, missing paths."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


def _ext(name: str) -> str:
    return name.rsplit(".", 1)[1].lower() if "." in name else ""


def _stem(rel: str) -> str:
    return rel.rsplit(".", 1)[0]


@dataclass
class _Sidecar:
    """What a JSON sidecar says, parsed leniently: errors are data, not exceptions."""

    fields: dict[str, Any] | None
    error: str | None

    @property
    def is_edit(self) -> bool:
        return self.fields is not None and str(self.fields.get("task", "")).upper() == "TI2I"


def _load_json_sidecar(path: str, root_real: str) -> _Sidecar:
    data, err = read_local_file(path, root_real, MAX_SIDECAR_BYTES)
    if data is None:
        return _Sidecar(None, err)
    try:
        obj = json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return _Sidecar(None, f"invalid JSON sidecar {os.path.basename(path)}: {e}")
    if not isinstance(obj, dict):
        return _Sidecar(None, f"JSON sidecar {os.path.basename(path)} is {type(obj).__name__}, not an object")
    return _Sidecar(obj, None)


def _resolve_edit_source(root: str, image_rel: str, source: object) -> tuple[str | None, str | None]:
    """Map a sidecar's "source" to a root-relative posix path; (rel, None) or (None, reason)."""
    if not isinstance(source, str) or not source.strip():
        return None, 'TI2I sidecar has no "source" path'
    if os.path.isabs(source):
        return None, f"TI2I source must be a relative path: {source!r}"
    base = os.path.dirname(image_rel)
    candidates = [os.path.normpath(os.path.join(base, source)), os.path.normpath(source)]
    inside = [c for c in candidates if not (c == ".." or c.startswith("../"))]
    if not inside:
        return None, f"TI2I source escapes the root: {source!r}"
    for rel in inside:
        if os.path.lexists(os.path.join(root, rel)):  # reading it later checks containment and file type
            return rel.replace(os.sep, "/"), None
    return None, f"TI2I source not found: {source!r}"


class FolderSource(Source):
    """Directory of images + sidecars. Partitions are chunks of the sorted relative image paths."""

    kind = "folder"

    def __init__(self, root: str, name: str | None = None) -> None:
        super().__init__(root, name)

    def _list(self, root: str) -> list[str]:
        """Sorted root-relative posix paths of every non-hidden file entry (directory links not followed)."""
        out: list[str] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
            for fn in filenames:
                if fn.startswith("."):
                    continue
                full = os.path.join(dirpath, fn)
                # Out-of-root symlinks stay listed: read() refuses them with a reason, so they are
                # counted and rejected rather than vanishing from `rows in`.
                out.append(os.path.relpath(full, root).replace(os.sep, "/"))
        return sorted(out)

    def plan(self, rows_per_partition: int) -> list[PartitionSpec]:
        if rows_per_partition < 1:
            raise UserError(f"rows_per_partition must be >= 1, got {rows_per_partition}")
        if not os.path.exists(self.root):
            raise SourceError(f"folder source does not exist: {self.root}")
        if not os.path.isdir(self.root):
            raise SourceError(f"folder source is not a directory: {self.root}")
        root = os.path.abspath(self.root)
        files = self._list(root)
        present = set(files)
        images = [f for f in files if _ext(f) in IMAGE_EXTENSIONS]

        # Edit sidecars are parsed at plan time: which files are edit sources decides the rows.
        edit_sources: dict[str, str] = {}
        targets: set[str] = set()
        for rel in images:
            side = _stem(rel) + ".json"
            if side not in present:
                continue
            sidecar = _load_json_sidecar(os.path.join(root, side), os.path.realpath(root))
            if sidecar.fields is None or not sidecar.is_edit:
                continue
            targets.add(rel)
            src, _ = _resolve_edit_source(root, rel, sidecar.fields.get("source"))
            if src is not None:
                edit_sources[rel] = src
        source_only = set(edit_sources.values()) - targets
        samples = [f for f in images if f not in source_only]

        root_real = os.path.realpath(root)

        def size(rel: str) -> int:
            full = os.path.join(root, rel)
            try:
                inside = is_inside(os.path.realpath(full), root_real)
                return (os.stat(full) if inside else os.lstat(full)).st_size  # nothing outside the root
            except OSError:
                return -1  # broken symlink etc.: still a row; read() reports the error

        specs: list[PartitionSpec] = []
        for index, start in enumerate(range(0, len(samples), rows_per_partition)):
            chunk = tuple(samples[start : start + rows_per_partition])
            parts: list[object] = [self.kind, start, start + len(chunk)]
            for rel in chunk:
                parts += [rel, size(rel)]
                for side in (_stem(rel) + ".txt", _stem(rel) + ".json"):
                    if side in present:
                        parts += [side, size(side)]
                if rel in edit_sources:
                    parts += ["source", edit_sources[rel], size(edit_sources[rel])]
            specs.append(
                PartitionSpec(
                    kind=self.kind,
                    source=self.name,
                    root=root,
                    local_index=index,
                    files=chunk,
                    start=start,
                    stop=start + len(chunk),
                    fingerprint=fingerprint(parts),
                )
            )
        return specs

    @staticmethod
    def read(spec: PartitionSpec) -> Iterator[RawSample]:
        root_real = os.path.realpath(spec.root)
        for rel in spec.files:
            yield _read_one(spec.root, root_real, rel)


def _read_text_sidecar(path: str, root_real: str) -> tuple[str | None, str | None]:
    data, err = read_local_file(path, root_real, MAX_SIDECAR_BYTES)
    if data is None:
        return None, err
    return decode_text(data, f"text sidecar {os.path.basename(path)}")


def _read_one(root: str, root_real: str, rel: str) -> RawSample:
    """Build one sample; every failure is recorded on the sample, never raised."""
    path = os.path.join(root, rel)
    image, read_error = read_local_file(path, root_real)
    errors: list[str] = []

    text: str | None = None
    txt_path, json_path = os.path.join(root, _stem(rel) + ".txt"), os.path.join(root, _stem(rel) + ".json")
    if os.path.lexists(txt_path):  # a FIFO or directory named x.txt becomes a sidecar_error, not a hang
        text, err = _read_text_sidecar(txt_path, root_real)
        errors += [err] if err else []
    sidecar = _load_json_sidecar(json_path, root_real) if os.path.lexists(json_path) else _Sidecar({}, None)
    errors += [sidecar.error] if sidecar.error else []
    fields = dict(sidecar.fields or {})

    task, source_image, source_uri = "T2I", None, None
    if sidecar.is_edit:
        task = "TI2I"
        fields.pop("task")
        caption = pop_str(fields, ("instruction",))
        if caption is None:
            caption = text if text is not None else pop_str(fields, CAPTION_KEYS)
        elif text is not None:
            fields.setdefault("caption", text)  # the plain caption of an edit is kept as meta
        source = fields.pop("source", None)
        src_rel, src_err = _resolve_edit_source(root, rel, source)
        if src_rel is None:
            source_uri = source if isinstance(source, str) else None
        else:
            source_uri = os.path.abspath(os.path.join(root, src_rel))
            source_image, src_err = read_local_file(source_uri, root_real)
        if src_err:
            read_error = read_error or f"edit source unreadable: {src_err}"
    else:
        if str(fields.get("task", "")).upper() == "T2I":
            fields.pop("task")
        caption = text if text is not None else pop_str(fields, CAPTION_KEYS)

    meta: dict[str, Any] = fields
    if errors:
        meta["sidecar_error"] = "; ".join(errors)
    return RawSample(
        uri=os.path.abspath(path),
        image=image,
        caption=caption,
        task=task,
        source_image=source_image,
        source_uri=source_uri,
        meta=meta or None,
        read_error=read_error,
    )
