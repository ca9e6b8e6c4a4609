"""ParquetSource: bytes / path / HF struct layouts, TI2I columns, row-range partitions."""

from __future__ import annotations

import io
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from flywheel.ingest import ParquetSource, SourceError, read_partition


def png(shade: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.new("L", (3, 3), shade).save(buf, format="PNG")
    return buf.getvalue()


def read_all(path: Path, rows: int = 1000) -> list:
    return [s for spec in ParquetSource(str(path)).plan(rows) for s in read_partition(spec)]


def test_bytes_column_partitions_and_meta(tmp_path: Path) -> None:
    n = 10
    table = pa.table(
        {
            "key": [f"{i:05d}" for i in range(n)],
            "jpg": [png(i) for i in range(n)],
            "caption": [f"cap {i}" if i != 3 else None for i in range(n)],
            "width": list(range(n)),
            "embedding": [[0.1, 0.2]] * n,  # nested: not copied to meta
        }
    )
    pq.write_table(table, tmp_path / "00000.parquet", row_group_size=4)
    pq.write_table(table.slice(0, 3), tmp_path / "00001.parquet")

    plan = ParquetSource(str(tmp_path)).plan(4)
    assert [(p.files[0], p.start, p.stop) for p in plan] == [
        ("00000.parquet", 0, 4),
        ("00000.parquet", 4, 8),
        ("00000.parquet", 8, 10),
        ("00001.parquet", 0, 3),
    ]
    assert [p.local_index for p in plan] == [0, 1, 2, 3]
    assert plan == ParquetSource(str(tmp_path)).plan(4)
    assert len({p.fingerprint for p in plan}) == 4

    # A partition that straddles row groups reads exactly its rows.
    mid = list(read_partition(plan[1]))
    assert [s.uri for s in mid] == [f"{tmp_path / '00000.parquet'}#row={i}" for i in range(4, 8)]
    assert [s.image for s in mid] == [png(i) for i in range(4, 8)]
    assert mid[0].meta == {"key": "00004", "width": 4}

    samples = [s for p in plan for s in read_partition(p)]
    assert len(samples) == 13 and len({s.uri for s in samples}) == 13
    assert samples[3].caption is None and samples[3].read_error is None
    assert samples[0].caption == "cap 0" and samples[0].task == "T2I"


def test_path_column_relative_to_parquet_folder(tmp_path: Path) -> None:
    (tmp_path / "data/images").mkdir(parents=True)
    (tmp_path / "data/images/a.png").write_bytes(png(1))
    (tmp_path / "secret.png").write_bytes(png(2))
    table = pa.table(
        {
            "image_path": ["images/a.png", "images/missing.png", "../secret.png", "http://example.com/x.jpg", None],
            "text": ["a", "b", "c", "d", "e"],
        }
    )
    pq.write_table(table, tmp_path / "data/meta.parquet")

    s = read_all(tmp_path / "data/meta.parquet")
    assert len(s) == 5
    assert s[0].image == png(1) and s[0].caption == "a" and s[0].read_error is None
    assert s[1].image is None and "FileNotFoundError" in s[1].read_error
    assert s[2].image is None and "outside the source root" in s[2].read_error
    assert s[3].image is None and "remote url" in s[3].read_error
    assert s[4].image is None and "null" in s[4].read_error

    # Explicit opt-in reads paths outside the root.
    spec = ParquetSource(str(tmp_path / "data/meta.parquet"), allow_paths_outside_root=True).plan(10)[0]
    assert list(read_partition(spec))[2].image == png(2)


def test_hf_struct_image(tmp_path: Path) -> None:
    (tmp_path / "b.png").write_bytes(png(7))
    struct = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    images = pa.array(
        [{"bytes": png(5), "path": "orig.png"}, {"bytes": None, "path": "b.png"}, {"bytes": None, "path": None}],
        type=struct,
    )
    pq.write_table(pa.table({"image": images, "text": ["x", "y", "z"]}), tmp_path / "train-0.parquet")
    s = read_all(tmp_path)
    assert s[0].image == png(5) and s[1].image == png(7)
    assert s[2].image is None and "neither bytes nor path" in s[2].read_error


def test_ti2i_columns(tmp_path: Path) -> None:
    (tmp_path / "src.png").write_bytes(png(9))
    table = pa.table(
        {
            "image": [png(1), png(2)],
            "source_image_path": ["src.png", "nope.png"],
            "instruction": ["brighten", "darken"],
            "caption": ["a bright thing", None],
        }
    )
    pq.write_table(table, tmp_path / "edits.parquet")
    s = read_all(tmp_path)
    assert [x.task for x in s] == ["TI2I", "TI2I"]
    assert s[0].caption == "brighten" and s[0].source_image == png(9) and s[0].image == png(1)
    assert s[0].source_uri == str(tmp_path / "src.png") and s[0].meta == {"caption": "a bright thing"}
    assert s[1].source_image is None and "edit source" in s[1].read_error and s[1].image == png(2)


def test_ti2i_source_bytes_uri(tmp_path: Path) -> None:
    table = pa.table({"jpg": [png(1)], "source_image": [png(2)], "instruction": ["x"]})
    pq.write_table(table, tmp_path / "e.parquet")
    (s,) = read_all(tmp_path / "e.parquet")
    assert s.source_image == png(2) and s.source_uri == f"{tmp_path / 'e.parquet'}#row=0&column=source_image"


def test_unknown_layout_and_missing_path(tmp_path: Path) -> None:
    pq.write_table(pa.table({"caption": ["no image here"]}), tmp_path / "x.parquet")
    with pytest.raises(SourceError, match="no image column"):
        ParquetSource(str(tmp_path)).plan(10)
    with pytest.raises(SourceError, match="does not exist"):
        ParquetSource(str(tmp_path / "missing.parquet")).plan(10)


def test_corrupt_file_is_one_error_row(tmp_path: Path) -> None:
    pq.write_table(pa.table({"jpg": [png(1)], "caption": ["ok"]}), tmp_path / "a.parquet")
    (tmp_path / "b.parquet").write_bytes(b"PAR1 garbage that is not parquet")
    plan = ParquetSource(str(tmp_path)).plan(10)
    samples = [s for p in plan for s in read_partition(p)]
    assert len(samples) == 2
    assert samples[0].read_error is None
    assert samples[1].image is None and "unreadable parquet" in samples[1].read_error
    assert samples[1].uri == str(tmp_path / "b.parquet")


def test_file_shrunk_after_plan_reports_missing_rows(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pq.write_table(pa.table({"jpg": [png(i) for i in range(4)]}), path)
    plan = ParquetSource(str(path)).plan(10)
    pq.write_table(pa.table({"jpg": [png(0)]}), path)
    s = list(read_partition(plan[0]))
    assert len(s) == 4 and s[0].read_error is None
    assert all("missing" in x.read_error for x in s[1:])


def test_fifo_or_out_of_root_link_named_parquet_is_an_error_row(tmp_path: Path) -> None:
    import os

    root = tmp_path / "root"
    root.mkdir()
    pq.write_table(pa.table({"jpg": [png()], "caption": ["ok"]}), root / "ok.parquet")
    pq.write_table(pa.table({"jpg": [png()], "caption": ["secret"]}), tmp_path / "secret.parquet")
    os.mkfifo(root / "pipe.parquet")  # no writer: the footer read would block forever
    os.symlink(tmp_path / "secret.parquet", root / "leak.parquet")
    samples = read_all(root)
    errors = {os.path.basename(s.uri): s.read_error for s in samples if s.read_error}
    assert len(samples) == 3 and set(errors) == {"pipe.parquet", "leak.parquet"}
    assert "not a regular file" in errors["pipe.parquet"] and "outside the source root" in errors["leak.parquet"]
