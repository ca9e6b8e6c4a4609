"""The funnel of a selection as bars: rows each rule removed, in the order the rules ran."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from dashboards.charts import bar_chart
from dashboards.views.base import View, read_json, recipe_of


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    recipe, recipes = recipe_of(app, request)
    if recipe is None:
        return {"recipes": recipes, "recipe": None, "sections": [], "empty": "no selection yet: run `flywheel select`"}
    funnel = read_json(app.state.ws, recipe, "funnel.json")
    rules = funnel.get("rules", [])
    chart = bar_chart(
        [r["name"] for r in rules], [r["removed"] for r in rules], label=f"funnel {recipe}", y_label="rows removed"
    )
    rows, left = [], funnel.get("rows_in", 0)
    for r in rules:
        left -= r["removed"]
        rows.append([r["name"], r["removed"], r["failed_total"], left, r["condition"]])
    rows += [[n["rule"], "-", "-", left, f"not applied: {n['why']}"] for n in funnel.get("not_applied", [])]
    return {
        "recipes": recipes,
        "recipe": recipe,
        "sections": [
            {
                "title": f"{funnel.get('rows_in', 0)} rows in, {funnel.get('kept', 0)} kept, "
                f"{funnel.get('rejected', 0)} rejected",
                "chart": chart,
                "table": {"cols": ["rule", "removed", "fails", "left", "condition"], "rows": rows},
                "links": [
                    (f"/data/rejected?recipe={recipe}&reason={r['name']}", r["name"]) for r in rules if r["removed"]
                ],
            }
        ],
    }


VIEW = View("funnel", "Funnel", build)
