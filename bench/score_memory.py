"""Peak memory of `flywheel score`, and what its driver receives, as the input grows (1x, 4x, 16x the demo corpus).

Runs the real CLI in a subprocess (its own local Ray) and samples, every 100 ms, the RSS of the driver
process alone and the summed RSS of the driver and every Ray worker it started, then reports the peaks and,
from the run log, the bytes the driver received from the writer tasks (`driver_bytes`) next to the image
bytes the workers wrote into the pool. Flat driver memory and bytes mean the workers write the shards and
the driver only plans and commits.

    python3 bench/score_memory.py [--scales 1,4,16] [--filters broken,resolution,dedup,entropy,tokens] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus.build import build_corpus  # noqa: E402


def own_rss(proc: psutil.Process) -> int:
    try:
        return proc.memory_info().rss
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def peak_rss(cmd: list[str]) -> tuple[int, int, float]:
    """(peak RSS of the driver, peak RSS of the driver and its Ray workers, seconds)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    with tempfile.TemporaryFile(mode="w+") as errors:  # a file, not a pipe: a full pipe would stall the run
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=errors)
        handle = psutil.Process(proc.pid)
        peak = driver = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss(handle))
            driver = max(driver, own_rss(handle))
            time.sleep(0.1)
        if proc.returncode != 0:
            errors.seek(0)
            raise RuntimeError(f"{cmd} exited with {proc.returncode}: {errors.read()[-2000:]}")
    return driver, peak, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,4,16")
    parser.add_argument("--filters", default="broken,resolution,dedup,entropy,tokens")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rows = []
    for scale in [int(s) for s in args.scales.split(",")]:
        with tempfile.TemporaryDirectory() as tmp:
            info = build_corpus(Path(tmp) / "corpus", scale=scale)
            files = [p for p in info.images_dir.rglob("*") if p.is_file()]
            size = sum(p.stat().st_size for p in files)
            cmd = [
                sys.executable,
                "-m",
                "pipelines.cli",
                "score",
                str(info.images_dir),
                "--workspace",
                str(Path(tmp) / "ws"),
                "--rows-per-partition",
                "64",
                "--filters",
                args.filters,
            ]
            driver, peak, seconds = peak_rss(cmd)
            ws = Path(tmp) / "ws"
            log = json.loads(sorted((ws / "runs").glob("*-score.json"))[-1].read_text())
            pool = pq.read_table(ws / "pool", columns=["image"])
            image_bytes = sum(len(b or b"") for b in pool.column("image").to_pylist())
            rows.append((scale, len(files), size, driver, peak, log["driver_bytes"], image_bytes, seconds))
    lines = [
        "### Peak memory of scoring vs input size",
        "",
        "| scale | files | input MB | driver peak RSS MB | driver + workers peak RSS MB | bytes to driver | "
        "image bytes written by workers | seconds |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for scale, n, size, driver, peak, received, image_bytes, seconds in rows:
        lines.append(
            f"| {scale}x | {n} | {size / 1e6:.1f} | {driver / 1e6:.0f} | {peak / 1e6:.0f} | {received:,} | "
            f"{image_bytes:,} | {seconds:.1f} |"
        )
    lines += [
        "",
        f"command: `python3 bench/score_memory.py --scales {args.scales} --filters {args.filters}`; "
        f"{os.cpu_count()} cores, 64 rows per partition",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
