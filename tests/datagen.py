"""Labeled test data for the tests: thin wrappers around corpus.build.

Tests that score or select need real files with known answers; building them through the
same generator as the demo corpus keeps one definition of every label (see the
`corpus/build.py` docstring and `CorpusPlan`). The small plan has ~50 samples with
every label kind at least once and builds in about half a second after imports.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from corpus.build import CorpusInfo, CorpusPlan, build_corpus

__all__ = ["CorpusInfo", "demo_corpus", "labels_by_file", "load_labels", "small_corpus"]


def small_corpus(tmp_path: Path, seed: int = 0) -> CorpusInfo:
    """The ~50-sample corpus (every label kind) under `tmp_path/corpus`: images/ + labels.jsonl."""
    return build_corpus(Path(tmp_path) / "corpus", seed=seed, plan=CorpusPlan.small(), overwrite=True)


def demo_corpus(tmp_path: Path, scale: int = 1, seed: int = 0) -> CorpusInfo:
    """The full demo corpus (~150 samples at scale 1, a few seconds); for slower integration tests."""
    return build_corpus(Path(tmp_path) / "corpus", scale=scale, seed=seed, overwrite=True)


def load_labels(path: Path) -> list[dict[str, Any]]:
    """Read labels.jsonl: one dict per sample file, in file-name order."""
    with Path(path).open(encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def labels_by_file(path: Path) -> dict[str, dict[str, Any]]:
    """Labels keyed by their `file` (the path relative to the images folder)."""
    return {label["file"]: label for label in load_labels(path)}
