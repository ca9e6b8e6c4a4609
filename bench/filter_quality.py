"""Precision/recall of every stage-1 filter on the labeled generator corpus, through the real pipeline.

    python3 bench/filter_quality.py [--scale 1] [--out docs/filter_quality.md]

Builds the corpus (`corpus.build`), scores it with `flywheel score` (Ray Data, all
filters), and compares each filter's decision with the labels (`corpus.quality`).
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from corpus.build import build_corpus
from corpus.quality import evaluate, to_markdown
from flywheel.workspace import Workspace
from pipelines.steps.score import score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        info = build_corpus(Path(tmp) / "corpus", scale=args.scale, seed=args.seed)
        ws = Workspace.at(Path(tmp) / "ws")
        started = time.perf_counter()
        result = score(str(info.images_dir), ws, rows_per_partition=64, log=lambda m: print(m, file=sys.stderr))
        seconds = time.perf_counter() - started
        scores = evaluate(ws.pool.shard_paths(), info.labels_path, info.images_dir)
    text = "\n".join(
        [
            f"### Filter precision/recall on the labeled corpus (scale {args.scale}, seed {args.seed}, "
            f"{result.rows_written} samples)",
            "",
            to_markdown(scores),
            f"machine: {platform.machine()}, Python {platform.python_version()}; scoring took {seconds:.1f}s "
            "(Ray start included)",
            f"command: `python3 bench/filter_quality.py --scale {args.scale} --seed {args.seed}`",
            "",
        ]
    )
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
