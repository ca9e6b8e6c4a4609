"""bench/rcc.py reads Qt resource bundles (the GCompris photos the rotation trainer uses) and refuses bad ones."""

from __future__ import annotations

import struct
import zlib

import pytest

from bench.rcc import read_rcc


def _name(text: str) -> bytes:
    return struct.pack(">HI", len(text), 0) + text.encode("utf-16-be")


def _bundle(entries: dict[str, tuple[bytes, bool]]) -> bytes:
    """A version-2 bundle: one root directory holding `entries` (name -> (bytes, zlib-compressed?))."""
    names, data, nodes = b"", b"", []
    root_name = len(names)
    names += _name("root")
    for name, (blob, compressed) in entries.items():
        stored = struct.pack(">I", len(blob)) + zlib.compress(blob) if compressed else blob
        nodes.append((len(names), 1 if compressed else 0, len(data)))
        names += _name(name)
        data += struct.pack(">I", len(stored)) + stored
    tree = struct.pack(">IHII", root_name, 2, len(nodes), 1) + b"\0" * 8
    for name_offset, flags, data_offset in nodes:
        tree += struct.pack(">IHHHI", name_offset, flags, 0, 0, data_offset) + b"\0" * 8
    header_size = 20
    tree_at, data_at = header_size, header_size + len(tree)
    names_at = data_at + len(data)
    return b"qres" + struct.pack(">IIII", 2, tree_at, data_at, names_at) + tree + data + names


def test_reads_stored_and_compressed_entries(tmp_path):
    path = tmp_path / "a.rcc"
    path.write_bytes(_bundle({"cat.webp": (b"RIFF-cat", False), "dog.webp": (b"dog" * 50, True)}))
    assert read_rcc(path) == {"cat.webp": b"RIFF-cat", "dog.webp": b"dog" * 50}


def test_refuses_other_files_and_offsets_outside(tmp_path):
    other = tmp_path / "x.rcc"
    other.write_bytes(b"PK\x03\x04 not a bundle at all")
    with pytest.raises(ValueError, match="not a Qt resource bundle"):
        read_rcc(other)
    broken = tmp_path / "broken.rcc"
    broken.write_bytes(_bundle({"cat.webp": (b"RIFF-cat", False)})[:40])
    with pytest.raises(ValueError, match="outside the file"):
        read_rcc(broken)
