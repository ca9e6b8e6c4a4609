"""Peak memory of `flywheel score` as the input grows (1x and 4x the demo corpus).

Runs the real CLI in a subprocess (its own local Ray) and samples, every 100 ms, the summed
RSS of the driver and of every Ray worker it started, then reports the peak. Flat memory
means the pipeline streams partitions instead of materialising the pool.

    python3 bench/score_memory.py [--scales 1,4] [--out docs/benchmarks_memory.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from corpus.build import build_corpus  # noqa: E402


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return total


def peak_rss(cmd: list[str]) -> tuple[int, float]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    handle = psutil.Process(proc.pid)
    peak = 0
    while proc.poll() is None:
        peak = max(peak, tree_rss(handle))
        time.sleep(0.1)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd} exited with {proc.returncode}")
    return peak, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", default="1,4")
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
            ]
            peak, seconds = peak_rss(cmd)
            rows.append((scale, len(files), size, peak, seconds))
    lines = [
        "### Peak memory of scoring vs input size",
        "",
        "| scale | files | input MB | peak RSS (driver + Ray workers) MB | seconds |",
        "|---|---|---|---|---|",
    ]
    for scale, n, size, peak, seconds in rows:
        lines.append(f"| {scale}x | {n} | {size / 1e6:.1f} | {peak / 1e6:.0f} | {seconds:.1f} |")
    lines += [
        "",
        f"command: `python3 bench/score_memory.py --scales {args.scales}`; "
        f"{os.cpu_count()} cores, all filters, 64 rows per partition",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
