"""What the integrity checks cost `flywheel select`: shard checksum verification and the whole command.

    python3 bench/select_integrity.py --workspace flywheel-demo --runs 5

Times, on an existing scored workspace: (1) `Workspace.require_complete_pool()` alone (sha256 of every
pool shard + comparison with the planned rows), in process; (2) `flywheel select` end to end as a user
waits (a fresh Python process each run, DuckDB included; no Ray). Prints min and median of --runs.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from flywheel.workspace import Workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, type=Path)
    parser.add_argument("--recipe", default="stage1_256p")
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    ws = Workspace.at(args.workspace)
    pool_bytes = sum(p.stat().st_size for p in ws.require_pool())

    verify = []
    for _ in range(args.runs):
        started = time.perf_counter()
        ws.require_complete_pool()
        verify.append(time.perf_counter() - started)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "pipelines.cli", "select", "--workspace", str(ws.root), "--recipe", args.recipe]
    wall = []
    for _ in range(args.runs):
        started = time.perf_counter()
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wall.append(time.perf_counter() - started)

    report = {
        "machine": f"{platform.machine()} {os.cpu_count()} CPUs",
        "pool_bytes": pool_bytes,
        "verify_s": {"min": round(min(verify), 4), "median": round(statistics.median(verify), 4)},
        "select_cli_s": {"min": round(min(wall), 3), "median": round(statistics.median(wall), 3)},
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
