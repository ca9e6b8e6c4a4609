"""A score column's value for a file must not depend on which other filters the run enables."""

import json
from pathlib import Path

import pyarrow.parquet as pq
from skimage import data

from flywheel.workspace import Workspace
from pipelines.steps.score import score
from tests.images import encode, photo_like

# Columns of each filter under test, compared with a float tolerance of zero: the same pixels give the same bits.
COLUMNS = {
    "dedup": ["dedup_sha256", "dedup_phash"],
    "entropy": ["entropy_bits", "entropy_std", "entropy_detail"],
}


def _files(root: Path) -> None:
    """JPEGs whose draft decode differs by requested size (large ones) plus small JPEG and PNG files."""
    root.mkdir(parents=True)
    big = [data.astronaut(), data.coffee(), data.chelsea()]
    for i, arr in enumerate(big):  # 512-ish: a 64 px view drafts at 1/8, a 256 px view at 1/2
        (root / f"big{i}.jpg").write_bytes(encode(arr))
        (root / f"big{i}.txt").write_text(f"a photo number {i}")
    (root / "small.jpg").write_bytes(encode(photo_like(120, 90)))
    (root / "flat.png").write_bytes(encode(photo_like(700, 400, seed=3), "PNG"))


def _by_uri(ws: Workspace, columns: list[str]) -> dict[str, tuple]:
    table = pq.read_table(ws.pool.shard_paths(), columns=["uri", *columns])
    rows = zip(*(table.column(c).to_pylist() for c in ["uri", *columns]), strict=True)
    return {Path(r[0]).name: r[1:] for r in rows}


def test_columns_are_the_same_whichever_filters_run(tmp_path, ray_session):
    src = tmp_path / "src"
    _files(src)
    everything = Workspace.at(tmp_path / "all")
    result = score(str(src), everything, rows_per_partition=3, log=lambda m: None)
    # the run log times every scorer, model scorers included (rows = decodable images they scored)
    logged = json.loads(sorted(everything.runs_dir.glob("*-score.json"))[-1].read_text())["counters"]
    for name in ("dedup", "entropy", "nsfw", "rotation_net"):
        if name in result.unavailable:
            continue
        assert logged[name]["rows"] == 5 and logged[name]["seconds"] > 0, (name, logged.get(name))
    for name, columns in COLUMNS.items():
        alone = Workspace.at(tmp_path / name)
        score(str(src), alone, filters=[name], rows_per_partition=8, log=lambda m: None)
        expected = _by_uri(everything, columns)
        got = _by_uri(alone, columns)
        assert len(got) == 5 and all(v[0] is not None for v in got.values())
        assert got == expected, f"{name} columns changed when run alone"
