"""Training loss curves from the trainer's run logs (WORKSPACE/runs/train-<stage>.jsonl, one JSON per line).

The logs are read as files: the trainer appends {"step", "loss", "lr", "grad_norm", "samples_per_s", ...}
every logging window; resumed runs append to the same file, so a step seen twice keeps its last value.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request

from dashboards.charts import line_chart
from dashboards.views.base import View


def read_log(path: Path) -> dict[int, dict[str, Any]]:
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
    runs = {p.stem.removeprefix("train-"): read_log(p) for p in logs}

    def series(key: str) -> dict[str, list[tuple[float, float]]]:
        return {
            name: [(float(s), float(r[key])) for s, r in sorted(recs.items()) if isinstance(r.get(key), int | float)]
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
