"""Kept and rejected rows per category, when the pool has a `category` column."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from dashboards.charts import stacked_bars
from dashboards.views.base import View, recipe_of


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    recipe, recipes = recipe_of(app, request)
    cache = app.state.cache
    if cache.cursor() is None or recipe is None:
        return {"recipes": recipes, "recipe": recipe, "sections": [], "empty": "no selection yet"}
    rows = cache.aggregates.get("categories", {}).get(recipe)
    if not rows:
        return {"recipes": recipes, "recipe": recipe, "sections": [], "empty": "the pool has no `category` column"}
    labels = [r["category"] for r in rows]
    chart = stacked_bars(labels, {"kept": [r["kept"] for r in rows], "rejected": [r["rejected"] for r in rows]})
    table = [
        [r["category"], r["kept"], r["rejected"], f"{100 * r['kept'] / max(1, r['kept'] + r['rejected']):.1f}%"]
        for r in rows
    ]
    return {
        "recipes": recipes,
        "recipe": recipe,
        "sections": [
            {
                "title": "rows per category",
                "chart": chart,
                "table": {"cols": ["category", "kept", "rejected", "kept %"], "rows": table},
            }
        ],
    }


VIEW = View("categories", "Categories", build)
