"""A histogram per score column of the pool, with the selection's thresholds for that column drawn on it."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request

from dashboards.charts import histogram
from dashboards.views.base import View, read_json, recipe_of


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    recipe, recipes = recipe_of(app, request)
    cache = app.state.cache
    if cache.cursor() is None:
        return {
            "recipes": recipes,
            "recipe": recipe,
            "sections": [],
            "empty": "no scored pool yet: run `flywheel score`",
        }
    rules = read_json(app.state.ws, recipe, "recipe.json").get("rules", []) if recipe else []
    thresholds: dict[str, dict[str, float]] = {}
    for rule in rules:
        for bound in ("min", "max"):
            if (
                rule.get("column")
                and isinstance(rule.get(bound), int | float)
                and not isinstance(rule.get(bound), bool)
            ):
                thresholds.setdefault(rule["column"], {})[f"{rule['name']}.{bound}"] = float(rule[bound])
    sections = []
    hists = cache.aggregates.get("histograms", {})
    for col in sorted(hists, key=lambda c: (c not in thresholds, c)):
        h = hists[col]
        if h["lo"] is None:
            sections.append({"title": col, "note": f"all {h['nulls']} values are null"})
            continue
        note = f"{h['nulls']} null" if h["nulls"] else ""
        sections.append(
            {
                "title": col,
                "chart": histogram(h["lo"], h["hi"], h["counts"], thresholds.get(col, {}), label=col),
                "note": note,
            }
        )
    return {"recipes": recipes, "recipe": recipe, "sections": sections}


VIEW = View("histograms", "Score histograms", build)
