"""Wheel turns: each `flywheel retrain` turn's evaluation against the one before it, as charts.

Reads WORKSPACE/turns/turn-NNNN/report.json as files (written by the retrain flow's report step,
pipelines/steps/turn.py; the dashboard imports only the core, so the folder layout is read, not imported):
per category the pass rate and mean reward before and after the turn, the prompt track's re-evaluation with
the offline enhancer when the turn ran one, and the overall pass rate across turns.
"""

from __future__ import annotations

import json
import re
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from dashboards.charts import grouped_bars, line_chart
from dashboards.views.base import View

_TURN = re.compile(r"^turn-(\d{4,})$")


def _reports(app: FastAPI) -> list[tuple[int, str, dict[str, Any]]]:
    """(number, id, report) of every turn with a readable report.json, in turn order."""
    base = app.state.ws.turns_dir
    out = []
    for folder in base.iterdir() if base.is_dir() else []:
        m = _TURN.match(folder.name)
        path = folder / "report.json"
        if not m or not path.is_file():
            continue
        try:
            out.append((int(m.group(1)), folder.name, json.loads(path.read_text(encoding="utf-8"))))
        except json.JSONDecodeError:
            continue  # a report being written; the next load shows it
    return sorted(out)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _delta(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:+.1f} pt"


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    reports = _reports(app)
    if not reports:
        return {"sections": [], "empty": "no turns yet: `flywheel retrain -w WS` writes turns/turn-NNNN/report.json"}
    wanted = request.query_params.get("turn")
    if wanted:
        found = [r for r in reports if r[1] == wanted]
        if not found:
            raise HTTPException(404, f"no report for {wanted!r}; turns: {[r[1] for r in reports]}")
        _, name, report = found[0]
    else:
        _, name, report = reports[-1]
    cats = report.get("categories") or {}
    labels = sorted(cats)
    pass_series = {
        "before": [cats[c].get("pass_rate_before") for c in labels],
        "after": [cats[c].get("pass_rate_after") for c in labels],
    }
    reward_series = {
        "before": [cats[c].get("mean_reward_before") for c in labels],
        "after": [cats[c].get("mean_reward_after") for c in labels],
    }
    sections: list[dict[str, Any]] = [
        {
            "title": f"{name}: pass rate per category, before and after",
            "chart": grouped_bars(labels, pass_series, label=f"{name} pass rate", y_label="pass rate"),
            "note": f"{report.get('after')} against {report.get('before') or '(no earlier evaluation)'}; "
            f"overall {_pct(report.get('pass_rate_before'))} -> {_pct(report.get('pass_rate_after'))}",
            "links": [(f"?turn={r[1]}", r[1]) for r in reports],
        },
        {
            "title": f"{name}: mean reward per category, before and after",
            "chart": grouped_bars(labels, reward_series, label=f"{name} mean reward", y_label="reward"),
        },
    ]
    rewrite = report.get("prompt_track")
    if rewrite and "after" in rewrite:
        b, a = rewrite["before"], rewrite["after"]
        sections.append(
            {
                "title": f"{name}: prompt track, re-evaluated with the offline enhancer",
                "chart": grouped_bars(
                    ["pass rate", "mean reward"],
                    {"plain": [b["pass_rate"], b["mean_reward"]], "rewritten": [a["pass_rate"], a["mean_reward"]]},
                    label=f"{name} prompt track",
                ),
                "note": f"{len(rewrite.get('prompts', []))} routed prompt(s), {rewrite.get('pairs')} pairs, "
                f"{a['outputs']} outputs each way",
            }
        )
    elif rewrite:
        sections.append({"title": f"{name}: prompt track", "note": f"not re-evaluated: {rewrite.get('skipped')}"})
    trend: dict[str, list[tuple[float, float]]] = {"pass rate after the turn": []}
    for n, _, r in reports:
        if r.get("pass_rate_after") is not None:
            trend["pass rate after the turn"].append((float(n), float(r["pass_rate_after"])))
    sections.append(
        {"title": "overall pass rate per turn", "chart": line_chart(trend, x_label="turn", y_label="pass rate")}
    )
    rows = []
    for _, tid, r in reports:
        pt = r.get("prompt_track") or {}
        before, after = r.get("pass_rate_before"), r.get("pass_rate_after")
        rows.append(
            [
                tid,
                _pct(before),
                _pct(after),
                _delta(after - before if before is not None and after is not None else None),
                _delta(pt.get("pass_rate_delta")),
            ]
        )
    sections.append(
        {
            "title": "turns",
            "table": {"cols": ["turn", "pass rate before", "after", "change", "prompt track change"], "rows": rows},
        }
    )
    return {"sections": sections}


VIEW = View("turns", "Wheel turns", build)
