"""WebDatasetSource: key grouping, TI2I convention, partitions, damaged tars."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

from flywheel.ingest import WebDatasetSource, read_partition
from flywheel.ingest.webdataset import TAR_ERROR_KEY, split_name


def make_tar(path: Path, members: list[tuple[str, bytes | str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        for name, data in members:
            raw = data.encode() if isinstance(data, str) else data
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tf.addfile(info, io.BytesIO(raw))
    return path


def read_all(path: Path, rows: int = 1000) -> list:
    return [s for spec in WebDatasetSource(str(path)).plan(rows) for s in read_partition(spec)]


def test_split_name() -> None:
    assert split_name("dir/abc.src.JPG") == ("dir/abc", "src.jpg")
    assert split_name("./abc.txt") == ("abc", "txt")
    assert split_name("dir/._abc.jpg") is None
    assert split_name("README") is None


def test_grouping_and_captions(tmp_path: Path) -> None:
    tar = make_tar(
        tmp_path / "shard-000.tar",
        [
            ("000.jpg", b"img0"),
            ("000.txt", " caption zero \n"),
            ("001.png", b"img1"),
            ("001.json", json.dumps({"caption": "from json", "similarity": 0.3})),
            ("sub/002.webp", b"img2"),
            ("sub/002.cls", "7"),
            ("003.txt", "caption without image"),
            ("._000.jpg", b"appledouble"),
            ("000.json", json.dumps({"url": "http://a"})),  # same key, not consecutive: still sample 000
        ],
    )
    s = read_all(tar)
    assert [x.uri for x in s] == [f"{tar}#000", f"{tar}#001", f"{tar}#sub/002", f"{tar}#003"]
    assert s[0].image == b"img0" and s[0].caption == "caption zero" and s[0].meta == {"url": "http://a"}
    assert s[1].caption == "from json" and s[1].meta == {"similarity": 0.3}
    assert s[2].image == b"img2" and s[2].caption is None and s[2].meta == {"cls": "7"}
    assert s[3].image is None and "no image member" in s[3].read_error
    assert all(x.task == "T2I" for x in s)


def test_ti2i_convention(tmp_path: Path) -> None:
    tar = make_tar(
        tmp_path / "edits.tar",
        [
            ("e1.jpg", b"target"),
            ("e1.src.png", b"source"),
            ("e1.instruction.txt", "add a hat"),
            ("e1.txt", "a person"),
            ("e2.jpg", b"target2"),
            ("e2.instruction.txt", "no source here"),
            ("e3.jpg", b"t3"),
            ("e3.source.jpg", b"s3"),
            ("e3.json", json.dumps({"instruction": "json instr"})),
        ],
    )
    s = read_all(tar)
    assert [x.task for x in s] == ["TI2I", "TI2I", "TI2I"]
    assert s[0].image == b"target" and s[0].source_image == b"source" and s[0].caption == "add a hat"
    assert s[0].source_uri == f"{tar}#e1.src.png" and s[0].meta == {"caption": "a person"}
    assert s[0].read_error is None
    assert s[1].source_image is None and "without a source image" in s[1].read_error
    assert s[2].source_image == b"s3" and s[2].caption == "json instr"


def test_partitions_deterministic_across_shards(tmp_path: Path) -> None:
    make_tar(tmp_path / "b.tar", [(f"{i}.jpg", b"x" * i) for i in range(5)])
    make_tar(tmp_path / "a.tar", [(f"{i}.jpg", b"y") for i in range(2)])
    plan = WebDatasetSource(str(tmp_path)).plan(2)
    assert [(p.files[0], p.start, p.stop) for p in plan] == [
        ("a.tar", 0, 2),
        ("b.tar", 0, 2),
        ("b.tar", 2, 4),
        ("b.tar", 4, 5),
    ]
    assert [p.local_index for p in plan] == [0, 1, 2, 3]
    assert plan == WebDatasetSource(str(tmp_path)).plan(2)
    assert len({p.fingerprint for p in plan}) == 4
    assert [s.image for s in read_partition(plan[2])] == [b"xx", b"xxx"]
    assert sum(1 for p in plan for _ in read_partition(p)) == 7


def test_member_paths_are_never_used_on_disk(tmp_path: Path) -> None:
    tar = make_tar(tmp_path / "evil" / "evil.tar", [("../../escape.jpg", b"x"), ("/abs/k.jpg", b"y")])
    s = read_all(tar)
    assert [x.image for x in s] == [b"x", b"y"]
    assert not (tmp_path / "escape.jpg").exists()


def _payload(n: int) -> list[tuple[str, bytes | str]]:
    return [m for i in range(n) for m in ((f"{i:03d}.jpg", b"J" * 700), (f"{i:03d}.txt", f"cap {i}"))]


def test_truncated_tar_mid_data_yields_prefix_then_error(tmp_path: Path) -> None:
    full = make_tar(tmp_path / "full.tar", _payload(4)).read_bytes()
    cut = tmp_path / "cut" / "cut.tar"
    cut.parent.mkdir()
    cut.write_bytes(full[:3500])  # 001.jpg's data spans bytes 3072..3772: cut inside it
    s = read_all(cut, rows=2)
    assert [x.uri.rsplit("#", 1)[1] for x in s] == ["000", "001", TAR_ERROR_KEY]
    assert s[0].image == b"J" * 700 and s[0].caption == "cap 0" and s[0].read_error is None
    assert s[1].image is None and "truncated" in s[1].read_error
    assert s[2].image is None and "unexpected end of data" in s[2].read_error


def test_truncated_tar_at_header_boundary_is_detected(tmp_path: Path) -> None:
    full = make_tar(tmp_path / "full.tar", _payload(2)).read_bytes()
    cut = tmp_path / "cut" / "cut.tar"
    cut.parent.mkdir()
    cut.write_bytes(full[: 512 + 1024 + 512 + 512])  # 000.jpg and 000.txt complete, nothing after
    s = read_all(cut)
    assert [x.uri.rsplit("#", 1)[1] for x in s] == ["000", TAR_ERROR_KEY]
    assert s[0].image == b"J" * 700 and s[0].caption == "cap 0" and s[0].read_error is None
    assert "truncated" in s[1].read_error


def test_not_a_tar_and_empty_tar(tmp_path: Path) -> None:
    (tmp_path / "junk.tar").write_bytes(b"definitely not a tar archive" * 40)
    s = read_all(tmp_path / "junk.tar")
    assert len(s) == 1 and s[0].image is None and "unreadable" in s[0].read_error
    empty = make_tar(tmp_path / "e" / "empty.tar", [])
    assert WebDatasetSource(str(empty)).plan(10) == []


def test_fifo_or_out_of_root_link_named_tar_is_an_error_row(tmp_path: Path) -> None:
    import os

    root = tmp_path / "root"
    make_tar(root / "ok.tar", [("000.jpg", b"img0")])
    os.mkfifo(root / "pipe.tar")  # no writer: open() would block forever
    make_tar(tmp_path / "secret.tar", [("s.jpg", b"secret")])
    os.symlink(tmp_path / "secret.tar", root / "leak.tar")
    samples = [s for spec in WebDatasetSource(str(root)).plan(10) for s in read_partition(spec)]
    errors = {s.uri.split("#")[0].rsplit("/", 1)[-1]: s.read_error for s in samples if s.read_error}
    assert len(samples) == 3 and set(errors) == {"pipe.tar", "leak.tar"}
    assert "not a regular file" in errors["pipe.tar"] and "outside the source root" in errors["leak.tar"]
    assert all(s.image != b"secret" for s in samples)
