"""WebDataset source: one uncompressed .tar or a directory tree of .tar shards.

Conventions:

* Grouping: a member's key is its path up to the first dot of its basename, the rest is
  its extension (`dir/abc.src.jpg` -> key `dir/abc`, ext `src.jpg`), as in WebDataset.
  Members are grouped by key over the whole tar (not only consecutive runs), so a key split
  across the archive is still one sample and every uri is unique; sample order is the order
  of first appearance. A repeated member name: the later one wins (tar semantics) and
  `meta["duplicate_members"]` says so. Members whose basename starts with "." (e.g.
  macOS `._x.jpg`) or has no extension, directories, links and sparse files are skipped.
* Image: the first of `jpg jpeg png webp gif bmp tif tiff` present; other image members are
  listed in `meta["extra_images"]`. Caption: `txt`, else `json` "caption", else `json` "text";
  other JSON keys go to `meta`, and small UTF-8 members of other extensions (e.g. `cls`) go to
  `meta[ext]`.
* TI2I: a key with `key.src.<img>` (or `key.source.<img>`) or `key.instruction.txt` is an edit:
  the source member is the source image, the key's plain image is the target, and
  `key.instruction.txt` (else JSON "instruction", else the plain caption) is the caption; the
  plain caption is then kept in `meta["caption"]`. An instruction without a source image
  member is still TI2I and gets a read_error.
* Damage: plan and read scan headers only (random access, data is seeked over), then read
  member bytes by offset; nothing is extracted and member paths are never used as file
  paths. A truncated or corrupt tar keeps every sample listed before the damage (a sample
  whose bytes are cut gets a read_error) and adds one final sample `#__tar_error__` carrying
  the error; an unreadable tar is just that one sample. Plan never raises for a damaged tar.
* uri = f"{abs tar}#{key}"; source_uri = f"{abs tar}#{member name}".
  Compressed tars (.tar.gz) are not supported: random access needs an uncompressed archive.
"""

from __future__ import annotations

import contextlib
import json
import os
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from flywheel.ingest.base import (
    PartitionSpec,
    RawSample,
    Source,
    decode_text,
    fingerprint,
    pop_str,
)
from flywheel.ingest.folder import MAX_FILE_BYTES, MAX_SIDECAR_BYTES, is_inside, is_regular_file

IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "gif", "bmp", "tif", "tiff")
SOURCE_EXTS = tuple(f"{p}.{e}" for p in ("src", "source") for e in IMAGE_EXTS)
INSTRUCTION_EXT = "instruction.txt"
META_TEXT_BYTES = 4096  # other members up to this size are copied into meta as text
TAR_ERROR_KEY = "__tar_error__"
BLOCK = 512


@dataclass(frozen=True)
class Member:
    """A regular tar member, located by offset so it can be read without tarfile."""

    name: str
    offset: int
    size: int


@dataclass
class Group:
    """All members of one key, by extension, plus what was skipped for it."""

    key: str
    members: dict[str, Member] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)

    def note(self, kind: str, name: str) -> None:
        self.notes.setdefault(kind, []).append(name)


@dataclass
class Scan:
    """Result of reading a tar's headers: groups in first-appearance order and any damage."""

    groups: list[Group]
    error: str | None

    @property
    def num_samples(self) -> int:
        return len(self.groups) + (1 if self.error else 0)


def split_name(name: str) -> tuple[str, str] | None:
    """(key, lowercased ext) of a member name, or None for hidden or extension-less members."""
    name = name.lstrip("/")
    while name.startswith("./"):
        name = name[2:]
    directory, _, base = name.rpartition("/")
    if not base or base.startswith(".") or "." not in base:
        return None
    stem, ext = base.split(".", 1)
    return (f"{directory}/{stem}" if directory else stem), ext.lower()


def scan_tar(path: str) -> Scan:
    """Group a tar's members by key from headers only; damage is returned, never raised."""
    groups: dict[str, Group] = {}
    error: str | None = None
    if not is_regular_file(path):  # a FIFO named x.tar would block open() forever
        return Scan([], f"tar unreadable: not a regular file: {path}")
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:") as tf:
            while (info := tf.next()) is not None:
                split = split_name(info.name)
                if split is None or info.isdir():
                    continue
                key, ext = split
                group = groups.setdefault(key, Group(key))
                if not info.isreg() or info.issparse():
                    group.note("skipped_members", info.name)
                    continue
                if ext in group.members:
                    group.note("duplicate_members", info.name)
                group.members[ext] = Member(info.name, info.offset_data, info.size)
            # tarfile treats a cut or garbled header after the first as a clean end: check for
            # the zero block that really ends an archive.
            end = tf.offset
            raw.seek(end)
            block = raw.read(BLOCK)
            if len(block) < BLOCK or block.count(0) != BLOCK:
                error = f"tar truncated or corrupt at byte {end} (no end-of-archive marker)"
    except (tarfile.TarError, OSError, EOFError) as e:
        error = f"tar unreadable: {type(e).__name__}: {e}"
    return Scan(list(groups.values()), error)


class WebDatasetSource(Source):
    """Tar shards; partitions are sample-index ranges within one tar."""

    kind = "webdataset"

    def plan(self, rows_per_partition: int) -> list[PartitionSpec]:
        root, tars = self.container_files(rows_per_partition, ".tar")
        specs: list[PartitionSpec] = []
        root_real = os.path.realpath(root)
        for rel in tars:
            full = os.path.join(root, rel)
            if is_inside(os.path.realpath(full), root_real):
                scan = scan_tar(full)
            else:  # a symlinked tar leading out of the root is one error row, never read
                scan = Scan([], f"tar unreadable: path resolves outside the source root: {full}")
            size = os.lstat(full).st_size
            for start in range(0, scan.num_samples, rows_per_partition):
                stop = min(start + rows_per_partition, scan.num_samples)
                parts: list[object] = [self.kind, rel, size, start, stop, scan.error]
                for group in scan.groups[start:stop]:
                    parts += [(m.name, m.size) for m in group.members.values()]
                specs.append(
                    PartitionSpec(
                        kind=self.kind,
                        source=self.name,
                        root=root,
                        local_index=len(specs),
                        files=(rel,),
                        start=start,
                        stop=stop,
                        fingerprint=fingerprint(parts),
                    )
                )
        return specs

    @staticmethod
    def read(spec: PartitionSpec) -> Iterator[RawSample]:
        (rel,) = spec.files
        path = os.path.join(spec.root, rel)
        tar_uri = os.path.abspath(path)
        if is_inside(os.path.realpath(path), os.path.realpath(spec.root)):
            scan = scan_tar(path)
        else:
            scan = Scan([], f"tar unreadable: path resolves outside the source root: {path}")
        with contextlib.ExitStack() as stack:
            raw: BinaryIO | None = None
            try:
                if not is_regular_file(path) or (scan.error and not scan.groups):
                    raise OSError(scan.error or f"not a regular file: {path}")
                raw = stack.enter_context(open(path, "rb"))
            except OSError as e:
                scan.error = scan.error or f"tar unreadable: {e}"
            for i in range(spec.start, spec.stop):
                if i < len(scan.groups) and raw is not None:
                    yield _sample(raw, tar_uri, scan.groups[i])
                elif i == len(scan.groups) and scan.error:
                    yield RawSample(uri=f"{tar_uri}#{TAR_ERROR_KEY}", image=None, caption=None, read_error=scan.error)
                else:
                    yield RawSample(
                        uri=f"{tar_uri}#{TAR_ERROR_KEY}/{i}",
                        image=None,
                        caption=None,
                        read_error=f"sample {i} missing: tar changed since plan ({scan.error})",
                    )


def _read_member(raw: BinaryIO, member: Member, limit: int) -> tuple[bytes | None, str | None]:
    if member.size > limit:
        return None, f"member {member.name} larger than {limit} bytes"
    try:
        raw.seek(member.offset)
        data = raw.read(member.size)
    except OSError as e:
        return None, f"member {member.name} unreadable: {e}"
    if len(data) != member.size:
        return None, f"member {member.name} truncated ({len(data)} of {member.size} bytes)"
    return data, None


def _read_text(raw: BinaryIO, member: Member, limit: int) -> tuple[str | None, str | None]:
    data, err = _read_member(raw, member, limit)
    if data is None:
        return None, err
    return decode_text(data, f"member {member.name}")


def _sample(raw: BinaryIO, tar_uri: str, group: Group) -> RawSample:
    """Assemble one key's members into a sample; every failure lands on the sample."""
    members = group.members
    meta: dict[str, Any] = dict(group.notes)
    errors: list[str] = []  # read failures of the sample's image inputs
    side_errors: list[str] = []  # caption / metadata problems

    image_exts = [e for e in IMAGE_EXTS if e in members]
    image: bytes | None = None
    if image_exts:
        image, err = _read_member(raw, members[image_exts[0]], MAX_FILE_BYTES)
        errors += [err] if err else []
        if len(image_exts) > 1:
            meta["extra_images"] = image_exts[1:]
    else:
        errors.append(f"no image member (found: {sorted(members)})")

    fields: dict[str, Any] = {}
    if "json" in members:
        text, err = _read_text(raw, members["json"], MAX_SIDECAR_BYTES)
        try:
            obj = json.loads(text) if text is not None else None
        except json.JSONDecodeError as e:
            obj, err = None, f"invalid JSON in {members['json'].name}: {e}"
        if isinstance(obj, dict):
            fields = obj
        elif obj is not None:
            err = f"{members['json'].name} is {type(obj).__name__}, not an object"
        side_errors += [err] if err else []

    caption: str | None = None
    if "txt" in members:
        caption, err = _read_text(raw, members["txt"], MAX_SIDECAR_BYTES)
        side_errors += [err] if err else []
    if caption is None:
        caption = pop_str(fields, ("caption", "text"))

    task, source_image, source_uri = "T2I", None, None
    source_exts = [e for e in SOURCE_EXTS if e in members]
    instruction: str | None = None
    if INSTRUCTION_EXT in members:
        instruction, err = _read_text(raw, members[INSTRUCTION_EXT], MAX_SIDECAR_BYTES)
        side_errors += [err] if err else []
    instruction = instruction if instruction is not None else pop_str(fields, ("instruction",))
    if source_exts or INSTRUCTION_EXT in members:
        task = "TI2I"
        if instruction is not None:
            if caption is not None:
                meta["caption"] = caption  # the plain caption of an edit sample is kept
            caption = instruction
        if source_exts:
            src = members[source_exts[0]]
            source_uri = f"{tar_uri}#{src.name}"
            source_image, err = _read_member(raw, src, MAX_FILE_BYTES)
            errors += [f"edit source: {err}"] if err else []
        else:
            errors.append("TI2I sample without a source image member (key.src.<ext>)")
    elif instruction is not None:
        fields["instruction"] = instruction  # not an edit without a source image: keep it as meta

    used = {*image_exts[:1], *source_exts[:1], "json", "txt", INSTRUCTION_EXT}
    for ext in sorted(set(members) - used - set(IMAGE_EXTS) - set(SOURCE_EXTS)):
        member = members[ext]
        # Small UTF-8 members become meta text; anything else is only listed by name.
        text = _read_text(raw, member, META_TEXT_BYTES)[0] if member.size <= META_TEXT_BYTES else None
        if text is not None:
            meta[ext] = text
        else:
            meta.setdefault("other_members", []).append(member.name)
    meta.update({k: v for k, v in fields.items() if k not in meta})
    if side_errors:
        meta["sidecar_error"] = "; ".join(side_errors)
    return RawSample(
        uri=f"{tar_uri}#{group.key}",
        image=image,
        caption=caption,
        task=task,
        source_image=source_image,
        source_uri=source_uri,
        meta=meta or None,
        read_error="; ".join(errors) or None,
    )
