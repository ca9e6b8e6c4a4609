"""Training loss curves from the trainer's run logs (WORKSPACE/runs/train-<stage>.jsonl, one JSON per line).

The logs are read as files: the trainer appends {"step", "loss", "lr", "grad_norm", "samples_per_s", ...}
every logging window; resumed runs append to the same file, so a step seen twice keeps its last value.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request

from dashboards.charts import line_chart
from dashboards.views.base import View

MAX_POINTS = 400  # points drawn per curve; longer runs are averaged into this many buckets
_PARSED: dict[Path, tuple[tuple[int, int], dict[int, dict[str, Any]]]] = {}
_SECTIONS: dict[str, tuple[tuple[tuple[str, int, int], ...], dict[str, Any]]] = {}


def read_log(path: Path) -> dict[int, dict[str, Any]]:
    """Records by step, parsed once per file version (size and mtime), since logs only grow."""
    st = path.stat()
    key = (st.st_mtime_ns, st.st_size)
    hit = _PARSED.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    by_step = _parse(path)
    _PARSED[path] = (key, by_step)
    return by_step


def downsample(points: list[tuple[float, float]], n: int = MAX_POINTS) -> list[tuple[float, float]]:
    """Bucket means of consecutive points, so a 100k-step run draws as `n` points with the same shape."""
    if len(points) <= n:
        return points
    edges = np.linspace(0, len(points), n + 1).astype(int)
    arr = np.asarray(points, dtype=np.float64)
    return [tuple(arr[a:b].mean(axis=0)) for a, b in itertools.pairwise(edges) if b > a]


def _parse(path: Path) -> dict[int, dict[str, Any]]:
    by_step: dict[int, dict[str, Any]] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash mid-write
        if isinstance(rec, dict) and isinstance(rec.get("step"), int):
            by_step[rec["step"]] = rec
    return by_step


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    logs = sorted(app.state.ws.runs_dir.glob("train-*.jsonl")) if app.state.ws.runs_dir.is_dir() else []
    if not logs:
        return {"sections": [], "empty": "no training logs yet: `flywheel train` writes runs/train-<stage>.jsonl"}
    key = tuple((p.name, p.stat().st_mtime_ns, p.stat().st_size) for p in logs)
    hit = _SECTIONS.get("last")
    if hit is not None and hit[0] == key:  # logs unchanged since the last request: reuse the drawn charts
        return hit[1]
    out = _build(logs)
    _SECTIONS["last"] = (key, out)
    return out


def _build(logs: list[Path]) -> dict[str, Any]:
    runs = {p.stem.removeprefix("train-"): read_log(p) for p in logs}

    def series(key: str) -> dict[str, list[tuple[float, float]]]:
        return {
            name: downsample(
                [(float(s), float(r[key])) for s, r in sorted(recs.items()) if isinstance(r.get(key), int | float)]
            )
            for name, recs in runs.items()
        }

    table = [
        [name, max(recs) if recs else "-", f"{recs[max(recs)]['loss']:.4f}" if recs else "-", len(recs)]
        for name, recs in runs.items()
    ]
    return {
        "sections": [
            {"title": "training loss", "chart": line_chart(series("loss"), x_label="step", y_label="loss")},
            {
                "title": "samples per second",
                "chart": line_chart(series("samples_per_s"), x_label="step", y_label="samples/s"),
            },
            {"title": "runs", "table": {"cols": ["stage", "last step", "last loss", "log windows"], "rows": table}},
        ]
    }


VIEW = View("training", "Training loss", build)
