"""open_source auto-detection and read_partition dispatch."""

from __future__ import annotations

import io
import tarfile
from dataclasses import replace
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from flywheel.ingest import (
    FolderSource,
    ParquetSource,
    SourceError,
    WebDatasetSource,
    open_source,
    read_partition,
)


def make_tar(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w") as tf:
        info = tarfile.TarInfo("k.jpg")
        info.size = 3
        tf.addfile(info, io.BytesIO(b"abc"))
    return path


def make_parquet(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"jpg": [b"abc"], "caption": ["c"]}), path)
    return path


def test_detects_files_and_directories(tmp_path: Path) -> None:
    assert isinstance(open_source(str(make_parquet(tmp_path / "p/x.parquet"))), ParquetSource)
    assert isinstance(open_source(str(tmp_path / "p")), ParquetSource)
    assert isinstance(open_source(str(make_tar(tmp_path / "w/nested/a.tar"))), WebDatasetSource)
    assert isinstance(open_source(str(tmp_path / "w")), WebDatasetSource)
    (tmp_path / "f").mkdir()
    (tmp_path / "f/a.png").write_bytes(b"x")
    assert isinstance(open_source(str(tmp_path / "f"), name="faces"), FolderSource)
    assert open_source(str(tmp_path / "f"), name="faces").name == "faces"


def test_tar_wins_over_img2dataset_metadata_parquet(tmp_path: Path) -> None:
    make_tar(tmp_path / "00000.tar")
    pq.write_table(pa.table({"url": ["http://x"], "caption": ["c"]}), tmp_path / "00000.parquet")
    assert isinstance(open_source(str(tmp_path)), WebDatasetSource)


def test_hidden_tar_does_not_change_detection(tmp_path: Path) -> None:
    make_tar(tmp_path / ".trash/old.tar")
    (tmp_path / "a.png").write_bytes(b"x")
    assert isinstance(open_source(str(tmp_path)), FolderSource)


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        open_source(str(tmp_path / "missing"))
    (tmp_path / "single.png").write_bytes(b"x")
    with pytest.raises(SourceError, match="not a source"):
        open_source(str(tmp_path / "single.png"))


def test_read_partition_dispatch(tmp_path: Path) -> None:
    make_tar(tmp_path / "a.tar")
    (spec,) = open_source(str(tmp_path)).plan(10)
    (sample,) = read_partition(spec)
    assert sample.image == b"abc" and sample.uri == f"{tmp_path / 'a.tar'}#k"
    with pytest.raises(SourceError, match="unknown source kind"):
        read_partition(replace(spec, kind="nope"))
