"""Bad cases per track and per source over time (by ingestion day), from the bad-case store."""

from __future__ import annotations

import time
from datetime import date
from typing import Any

from fastapi import FastAPI, Request

from dashboards.charts import line_chart
from dashboards.views.base import View

TTL_S = 10.0  # the store changes with every decision; a 10 s old count is fine for a trend


def _counts(app: FastAPI) -> list[tuple[str, str, str, int]]:
    hit = app.state.memo.get("over_time")
    if hit is not None and time.monotonic() - hit[0] < TTL_S:
        return hit[1]
    with app.state.store.reading() as con:
        rows = con.execute(
            """SELECT substr(coalesce(created_at, ingested_at), 1, 10) AS day, source,
                      coalesce(track, 'unrouted') AS track, count(*) FROM cases WHERE kind = 'bad'
               GROUP BY 1, 2, 3 ORDER BY 1"""
        ).fetchall()
    out = [(r[0], r[1], r[2], int(r[3])) for r in rows]
    app.state.memo["over_time"] = (time.monotonic(), out)
    return out


def _series(rows: list[tuple[str, str, str, int]], key: int) -> dict[str, list[tuple[float, float]]]:
    per: dict[str, dict[float, float]] = {}
    for row in rows:
        try:
            day = float(date.fromisoformat(row[0]).toordinal())
        except ValueError:
            continue
        per.setdefault(row[key], {}).setdefault(day, 0.0)
        per[row[key]][day] += row[3]
    return {name: sorted(points.items()) for name, points in sorted(per.items())}


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    rows = _counts(app)
    if not rows:
        return {"sections": [], "empty": "no bad cases yet: `flywheel badcases ingest`"}
    days = sorted({r[0] for r in rows})
    note = f"days {days[0]} .. {days[-1]} (x axis: day ordinal)"
    table = {}
    for _, source, track, n in rows:
        table[(source, track)] = table.get((source, track), 0) + n
    return {
        "sections": [
            {
                "title": "bad cases per track per day",
                "chart": line_chart(_series(rows, 2), x_label="day", y_label="cases"),
                "note": note,
            },
            {
                "title": "bad cases per source per day",
                "chart": line_chart(_series(rows, 1), x_label="day", y_label="cases"),
                "note": note,
            },
            {
                "title": "totals",
                "table": {
                    "cols": ["source", "track", "cases"],
                    "rows": [[s, t, n] for (s, t), n in sorted(table.items())],
                },
            },
        ]
    }


VIEW = View("badcases", "Bad cases over time", build)
