"""What a re-selection costs once selections hold no image bytes: `flywheel select` over a large pool.

    python3 bench/reselect.py --rows 1000000 --shards 10 --image-bytes 1024 --out /tmp/reselect

Builds a pool of `--rows` rows in `--shards` shards (core columns, one score column, `--image-bytes` of
random bytes per image standing in for the encoded image), then times as a user waits (a fresh process,
DuckDB included): the first `flywheel select`, a re-selection with a changed threshold (`--set`), which
trusts the pool shards hashed by the first (unchanged size, mtime, inode), and the same re-selection with
`--rehash` (every pool byte hashed again, as every selection did before the verification cache).
Prints JSON: pool bytes, curated bytes, seconds per command. Pool building is not timed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.common import emit, machine  # noqa: E402
from flywheel.schema import CORE_COLUMNS, Column, ColumnRegistry  # noqa: E402
from flywheel.store.shards import ShardStore  # noqa: E402
from flywheel.workspace import Workspace  # noqa: E402

SCORE = Column("resolution_min_side", pa.int32(), "px", "Shorter side.", owner="resolution")
RECIPE = """
name: reselect
stage: 1
resolution: 64
tasks: [T2I]
rules:
  - {name: min_side, column: resolution_min_side, min: 256, why: too small}
"""


def build_pool(ws: Workspace, rows: int, shards: int, image_bytes: int) -> None:
    schema = ColumnRegistry((*CORE_COLUMNS, SCORE)).schema()
    rng = np.random.default_rng(0)
    per = rows // shards
    blob = rng.bytes(image_bytes * per)
    for part in range(shards):
        ids = [f"s{part}.{j}" for j in range(per)]
        offsets = pa.array(np.arange(0, (per + 1) * image_bytes, image_bytes, dtype=np.int32))
        cols = {
            "id": pa.array(ids),
            "uri": pa.array([f"/src/{i}.jpg" for i in ids]),
            "partition": pa.array(np.full(per, part, np.int32)),
            "task": pa.array(["T2I"] * per),
            "image": pa.BinaryArray.from_buffers(pa.binary(), per, [None, offsets.buffers()[1], pa.py_buffer(blob)]),
            "format": pa.array(["JPEG"] * per),
            "caption": pa.array([f"caption {i}" for i in ids]),
            "resolution_min_side": pa.array(rng.integers(64, 1024, per).astype(np.int32)),
        }
        table = pa.table({f.name: cols[f.name] if f.name in cols else pa.nulls(per, f.type) for f in schema})
        ShardStore(ws.pool_dir).write(part, table.cast(schema), f"fp{part}", row_group_size=4096)


def timed(cmd: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PYTHONPATH": str(REPO)})
    return time.perf_counter() - started


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=10)
    parser.add_argument("--image-bytes", type=int, default=1024)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    ws = Workspace.at(args.out / "ws")
    if not ws.pool_dir.is_dir():
        build_pool(ws, args.rows, args.shards, args.image_bytes)
    recipe = args.out / "reselect.yaml"
    recipe.write_text(RECIPE)
    base = [sys.executable, "-m", "pipelines.cli", "select", "-w", str(ws.root), "--recipe", str(recipe)]
    first = timed([*base, "--replace"])
    again = timed([*base, "--set", "min_side.min=512", "--replace"])
    rehashed = timed([*base, "--set", "min_side.min=512", "--replace", "--rehash"])
    report = {
        "rows": args.rows,
        "image_bytes": args.image_bytes,
        "machine": machine(),
        "pool_bytes": folder_bytes(ws.pool_dir),
        "curated_bytes": folder_bytes(ws.curated_dir("reselect")),
        "select_s": round(first, 1),
        "reselect_s": round(again, 1),
        "reselect_rehash_s": round(rehashed, 1),
    }
    emit(report, args.out / "reselect.json")


if __name__ == "__main__":
    main()
