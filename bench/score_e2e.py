"""End-to-end scoring speed as a user waits for it: `flywheel score` (CLI, Ray start included) vs a plain decode.

Both sides read the same files from disk in one run:
- baseline: one Python process that reads every file and fully decodes it with Pillow (`convert("RGB")`);
- flywheel: `python -m pipelines.cli score SRC --workspace WS --filters ...` in a subprocess, wall clock from
  launch to exit (Ray start, planning, scoring, shard writes, run log).
Figures are images/s and images/s per core (the baseline uses one core; `flywheel score` uses every core Ray
sees). The CPU-filter run is the headline; the model filters (NSFW, CNN rotation) are timed in a second run
and reported separately, with the per-scorer seconds from the run log.

    python3 bench/score_e2e.py [--n 600] [--side 1536] [--models] [--out docs/score_e2e.md]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

from bench.score_throughput import make_files

MODEL_FILTERS = "nsfw,rotation_net"


def default_cpu_filters() -> str:
    """The CPU filters `flywheel score` runs by default (every `default_on` filter that loads no model)."""
    from filters.registry import is_model, resolve

    return ",".join(c.name for c in resolve(None) if not is_model(c))


def write_source(root: Path, n: int, side: int) -> list[Path]:
    """`n` photo JPEGs (longer side `side`) with caption sidecars, as a folder source."""
    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, blob in enumerate(make_files(n, side)):
        path = root / f"img_{i:05d}.jpg"
        path.write_bytes(blob)
        path.with_suffix(".txt").write_text(f"a photograph number {i} of an everyday scene in daylight")
        paths.append(path)
    return paths


def baseline(paths: list[Path]) -> float:
    """Seconds for one process to read and fully decode every file."""
    started = time.perf_counter()
    for path in paths:
        with Image.open(io.BytesIO(path.read_bytes())) as img:
            img.convert("RGB").load()
    return time.perf_counter() - started


def flywheel_score(
    src: Path, workspace: Path, filters: str, rows_per_partition: int | None
) -> tuple[float, float, dict]:
    """Wall seconds of the CLI run, seconds inside `score()` (run log), and the per-scorer counters."""
    shutil.rmtree(workspace, ignore_errors=True)
    cmd = [sys.executable, "-m", "pipelines.cli", "score", str(src), "--workspace", str(workspace)]
    cmd += ["--filters", filters]
    if rows_per_partition is not None:
        cmd += ["--rows-per-partition", str(rows_per_partition)]
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "RAY_USAGE_STATS_ENABLED": "0"})
    seconds = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"flywheel score failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    logs = sorted((workspace / "runs").glob("*-score.json"))
    log = json.loads(logs[-1].read_text()) if logs else {}
    return seconds, float(log.get("seconds", 0.0)), log.get("counters", {})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--side", type=int, default=1536, help="longer side of the JPEGs")
    parser.add_argument("--rows-per-partition", type=int, help="default: the CLI's own (256, small sources split)")
    parser.add_argument("--filters", help="CPU filters of the headline run (default: the default CPU set)")
    parser.add_argument("--models", action="store_true", help="also time the model filters (nsfw, rotation_net)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    cpu_filters = args.filters or default_cpu_filters()
    tmp = Path(tempfile.mkdtemp(prefix="flywheel-e2e-"))
    load_start = os.getloadavg()[0]
    try:
        paths = write_source(tmp / "src", args.n, args.side)
        mb = sum(p.stat().st_size for p in paths) / 1e6
        baseline(paths[:16])  # warm the page cache and Pillow for both sides alike
        base_s = baseline(paths)
        runs = [
            (
                "flywheel score, CPU filters",
                cpu_filters,
                *flywheel_score(tmp / "src", tmp / "ws-cpu", cpu_filters, args.rows_per_partition),
            )
        ]
        if args.models:
            filters = f"broken,{MODEL_FILTERS}"
            runs.append(
                (
                    "flywheel score, model filters",
                    filters,
                    *flywheel_score(tmp / "src", tmp / "ws-models", filters, args.rows_per_partition),
                )
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    load_end = os.getloadavg()[0]
    base_ips = args.n / base_s
    lines = [
        f"### `flywheel score` end to end vs a single-process Pillow full decode ({args.n} JPEGs, longer side "
        f"{args.side}px, {mb / args.n:.2f} MB avg)",
        "",
        f"machine: {platform.machine()}, {cores} cores, Python {platform.python_version()}; "
        f"load average (1 min) {load_start:.1f} at start, {load_end:.1f} at end",
        "",
        "| pass | seconds | images/s | images/s per core | ratio per core vs baseline |",
        "|---|---|---|---|---|",
        f"| baseline: Pillow full decode, 1 process | {base_s:.1f} | {base_ips:.1f} | {base_ips:.1f} | 1.00 |",
    ]
    for label, filters, seconds, _, _ in runs:
        ips = args.n / seconds
        lines.append(
            f"| {label} (`--filters {filters}`, Ray start included, {cores} cores) | {seconds:.1f} | {ips:.1f} | "
            f"{ips / cores:.1f} | **{ips / cores / base_ips:.2f}** |"
        )
    lines.append("")
    for label, _, seconds, inside, counters in runs:
        per = ", ".join(
            f"{k} {1000 * v['seconds'] / max(1, v['rows']):.1f}" for k, v in counters.items() if v.get("rows")
        )
        lines.append(
            f"{label}: {seconds - inside:.1f} s of the wall time is outside `score()` (interpreter, imports, "
            f"Ray shutdown); scorer time from the run log (ms/image, summed over workers): {per}"
        )
    lines += [
        "",
        f"command: `python3 bench/score_e2e.py --n {args.n} --side {args.side}"
        + (f" --filters {args.filters}" if args.filters else "")
        + (" --models" if args.models else "")
        + "`",
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
