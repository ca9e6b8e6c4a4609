"""FolderSource: sidecars, edit triples, bad inputs as rows, deterministic partitions."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import pytest
from PIL import Image

from flywheel.ingest import FolderSource, SourceError, read_partition


def png(color: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (4, 4), color).save(buf, format="PNG")
    return buf.getvalue()


def write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data, encoding="utf-8")
    else:
        path.write_bytes(data)
    return path


def read_all(root: Path, rows: int = 100) -> dict[str, object]:
    samples = [s for spec in FolderSource(str(root)).plan(rows) for s in read_partition(spec)]
    by_name = {os.path.relpath(s.uri, root): s for s in samples}
    assert len(by_name) == len(samples), "uri must be unique"
    return by_name


def test_captions_from_txt_and_json(tmp_path: Path) -> None:
    write(tmp_path / "a.jpg", png())
    write(tmp_path / "a.txt", "  a red square \n")
    write(tmp_path / "sub/b.PNG", png())
    write(tmp_path / "sub/b.json", json.dumps({"caption": "json caption", "aesthetic": 5.5}))
    write(tmp_path / "c.webp", png())
    write(tmp_path / "c.json", json.dumps({"text": "from text key"}))
    write(tmp_path / "d.png", png())
    write(tmp_path / "d.txt", "txt wins")
    write(tmp_path / "d.json", json.dumps({"caption": "json loses", "url": "http://x"}))
    write(tmp_path / "e.gif", png())
    write(tmp_path / "notes.md", "not an image")

    s = read_all(tmp_path)
    assert sorted(s) == ["a.jpg", "c.webp", "d.png", "e.gif", "sub/b.PNG"]
    assert s["a.jpg"].caption == "a red square" and s["a.jpg"].image == png() and s["a.jpg"].meta is None
    assert s["sub/b.PNG"].caption == "json caption" and s["sub/b.PNG"].meta == {"aesthetic": 5.5}
    assert s["c.webp"].caption == "from text key"
    assert s["d.png"].caption == "txt wins" and s["d.png"].meta == {"caption": "json loses", "url": "http://x"}
    assert s["e.gif"].caption is None
    assert all(x.task == "T2I" and x.read_error is None for x in s.values())
    assert s["a.jpg"].uri == str(tmp_path / "a.jpg")


def test_edit_triples(tmp_path: Path) -> None:
    write(tmp_path / "edits/src/cat.png", png((0, 0, 255)))
    write(tmp_path / "edits/out/cat_red.png", png((255, 0, 0)))
    # "source" relative to the sidecar's folder
    write(
        tmp_path / "edits/out/cat_red.json",
        json.dumps({"task": "TI2I", "source": "../src/cat.png", "instruction": "make it red", "seed": 3}),
    )
    # "source" relative to the root
    write(tmp_path / "edits/out/cat_green.png", png((0, 255, 0)))
    write(
        tmp_path / "edits/out/cat_green.json",
        json.dumps({"task": "TI2I", "source": "edits/src/cat.png", "instruction": "make it green"}),
    )
    write(tmp_path / "edits/out/cat_green.txt", "a green cat")
    write(tmp_path / "plain.jpg", png())

    s = read_all(tmp_path)
    expected = ["edits/out/cat_green.png", "edits/out/cat_red.png", "plain.jpg"]
    assert sorted(s) == expected, "an edit source is not a sample of its own"
    red = s["edits/out/cat_red.png"]
    assert red.task == "TI2I" and red.caption == "make it red"
    assert red.image == png((255, 0, 0)) and red.source_image == png((0, 0, 255))
    assert red.source_uri == str(tmp_path / "edits/src/cat.png")
    assert red.meta == {"seed": 3} and red.read_error is None
    green = s["edits/out/cat_green.png"]
    assert green.source_image == png((0, 0, 255)) and green.caption == "make it green"
    assert green.meta == {"caption": "a green cat"}


def test_edit_chain_keeps_both_edits(tmp_path: Path) -> None:
    write(tmp_path / "a.png", png((1, 1, 1)))
    write(tmp_path / "b.png", png((2, 2, 2)))
    write(tmp_path / "b.json", json.dumps({"task": "TI2I", "source": "a.png", "instruction": "a to b"}))
    write(tmp_path / "c.png", png((3, 3, 3)))
    write(tmp_path / "c.json", json.dumps({"task": "TI2I", "source": "b.png", "instruction": "b to c"}))
    s = read_all(tmp_path)
    assert sorted(s) == ["b.png", "c.png"]
    assert s["c.png"].source_image == png((2, 2, 2))


def test_bad_inputs_are_rows_not_crashes(tmp_path: Path) -> None:
    write(tmp_path / "bad_sidecar.jpg", png())
    write(tmp_path / "bad_sidecar.json", "{not json")
    write(tmp_path / "empty.png", b"")
    write(tmp_path / "garbage.jpg", b"this is not a jpeg")
    write(tmp_path / "orphan_edit.png", png())
    edit = {"task": "TI2I", "instruction": "x"}
    write(tmp_path / "orphan_edit.json", json.dumps({**edit, "source": "gone.png"}))
    write(tmp_path / "escape.png", png())
    write(tmp_path / "escape.json", json.dumps({**edit, "source": "../../etc/passwd"}))
    write(tmp_path / "list.png", png())
    write(tmp_path / "list.json", "[1, 2]")

    s = read_all(tmp_path, rows=2)
    assert len(s) == 6
    bad = s["bad_sidecar.jpg"]
    assert bad.caption is None and "invalid JSON" in bad.meta["sidecar_error"] and bad.image == png()
    assert s["empty.png"].image == b"" and s["empty.png"].read_error is None
    assert s["garbage.jpg"].image == b"this is not a jpeg"
    orphan = s["orphan_edit.png"]
    assert orphan.task == "TI2I" and orphan.source_image is None and "not found" in orphan.read_error
    assert orphan.image == png(), "the target bytes are kept"
    assert "escapes the root" in s["escape.png"].read_error and s["escape.png"].source_image is None
    assert "not an object" in s["list.png"].meta["sidecar_error"]


def test_plan_is_deterministic_and_chunked(tmp_path: Path) -> None:
    for i in range(7):
        write(tmp_path / f"d{i % 2}/img{i}.jpg", png())
    src = FolderSource(str(tmp_path), name="mine")
    plan = src.plan(3)
    assert plan == FolderSource(str(tmp_path), name="mine").plan(3)
    assert [len(p.files) for p in plan] == [3, 3, 1]
    assert [p.local_index for p in plan] == [0, 1, 2]
    assert [(p.start, p.stop) for p in plan] == [(0, 3), (3, 6), (6, 7)]
    assert all(p.source == "mine" and p.kind == "folder" for p in plan)
    flat = [f for p in plan for f in p.files]
    assert flat == sorted(flat) and len(set(flat)) == 7
    assert len({p.fingerprint for p in plan}) == 3

    # A changed caption sidecar (different size) changes only its partition's fingerprint.
    write(tmp_path / (os.path.splitext(plan[1].files[0])[0] + ".txt"), "new caption")
    after = src.plan(3)
    assert [p.fingerprint == q.fingerprint for p, q in zip(plan, after, strict=True)] == [True, False, True]


def test_hidden_and_symlinks(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(root / "ok.png", png())
    write(root / ".hidden.png", png())
    write(root / ".cache/x.png", png())
    outside = write(tmp_path / "secret.png", png())
    os.symlink(outside, root / "leak.png")
    os.symlink(root / "ok.png", root / "alias.png")
    os.symlink(tmp_path, root / "linkdir")
    s = read_all(root)
    assert sorted(s) == ["alias.png", "leak.png", "ok.png"]
    assert s["alias.png"].image == png()
    # The out-of-root link is counted as a row, never read, and says why.
    assert s["leak.png"].image is None and "outside the source root" in (s["leak.png"].read_error or "")


def test_fifo_and_special_files_are_rows_with_a_reason_and_never_block(tmp_path: Path) -> None:
    write(tmp_path / "ok.png", png())
    os.mkfifo(tmp_path / "pipe.jpg")  # no writer: a blocking open() would hang forever
    os.mkfifo(tmp_path / "ok.json")  # a FIFO sidecar must not hang planning either
    os.mkfifo(tmp_path / "ok.txt")
    s = read_all(tmp_path)
    assert sorted(s) == ["ok.png", "pipe.jpg"]
    assert s["pipe.jpg"].image is None and "not a regular file (fifo)" in (s["pipe.jpg"].read_error or "")
    assert s["ok.png"].image == png() and s["ok.png"].meta["sidecar_error"].count("not a regular file (fifo)") == 2


def test_edit_source_outside_root_or_missing_is_a_read_error(tmp_path: Path) -> None:
    root = tmp_path / "root"
    write(tmp_path / "secret.png", png((0, 0, 255)))
    write(root / "escape.png", png())
    write(root / "escape.json", json.dumps({"task": "TI2I", "source": "../secret.png", "instruction": "x"}))
    write(root / "gone.png", png())
    write(root / "gone.json", json.dumps({"task": "TI2I", "source": "nope.png", "instruction": "x"}))
    os.symlink(tmp_path / "secret.png", root / "src_link.png")
    write(root / "linked.png", png())
    write(root / "linked.json", json.dumps({"task": "TI2I", "source": "src_link.png", "instruction": "x"}))
    s = read_all(root)
    assert "escapes the root" in s["escape.png"].read_error
    assert "not found" in s["gone.png"].read_error
    assert "outside the source root" in s["linked.png"].read_error and s["linked.png"].source_image is None


def test_missing_or_non_directory_root(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        FolderSource(str(tmp_path / "nope")).plan(10)
    with pytest.raises(SourceError, match="not a directory"):
        FolderSource(str(write(tmp_path / "x.png", png()))).plan(10)
    (tmp_path / "empty_dir").mkdir()
    assert FolderSource(str(tmp_path / "empty_dir")).plan(10) == []
