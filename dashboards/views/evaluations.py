"""Evaluation metrics per checkpoint, from WORKSPACE/evaluations/<checkpoint>/summary.json (trainer output,
read as files): overall pass rate, pass rate per category and mean reward, ordered by training step."""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, Request

from dashboards.charts import line_chart
from dashboards.views.base import View

_STEP = re.compile(r"step-(\d+)")


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    base = app.state.ws.evaluations_dir
    summaries = []
    for path in sorted(base.glob("*/summary.json")) if base.is_dir() else []:
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue
        m = _STEP.search(path.parent.name)
        summaries.append((int(m.group(1)) if m else len(summaries), path.parent.name, data))
    if not summaries:
        return {"sections": [], "empty": "no evaluations yet: `flywheel evaluate` writes evaluations/*/summary.json"}
    summaries.sort()
    pass_rate: dict[str, list[tuple[float, float]]] = {"all": []}
    reward: dict[str, list[tuple[float, float]]] = {}
    for step, _, data in summaries:
        pass_rate["all"].append((float(step), float(data.get("pass_rate", 0.0))))
        for cat, c in (data.get("categories") or {}).items():
            pass_rate.setdefault(cat, []).append((float(step), float(c.get("pass_rate", 0.0))))
            reward.setdefault(cat, []).append((float(step), float(c.get("mean_reward", 0.0))))
    rows = [
        [name, step, data.get("outputs"), f"{100 * data.get('pass_rate', 0):.1f}%"] for step, name, data in summaries
    ]
    return {
        "sections": [
            {"title": "pass rate per checkpoint", "chart": line_chart(pass_rate, x_label="step", y_label="pass rate")},
            {"title": "mean reward per category", "chart": line_chart(reward, x_label="step", y_label="reward")},
            {"title": "evaluations", "table": {"cols": ["evaluation", "step", "outputs", "pass rate"], "rows": rows}},
        ]
    }


VIEW = View("evaluations", "Evaluations", build)
