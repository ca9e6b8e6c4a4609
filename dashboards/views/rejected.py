"""A paged gallery of rejected samples per reason: thumbnail, the measured value, the rule's why.

Reads the cache's `gallery` table (rejected rows joined with their scores, ordered by recipe and reason),
so a page is one indexed range read however large the pool is. A thumbnail opens the sample's page with
the full-size image and every score.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse

from dashboards.auth import Engineer
from dashboards.views.base import View, read_json, recipe_of

PAGE = 48


def _rules(app: FastAPI, recipe: str) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for r in read_json(app.state.ws, recipe, "recipe.json").get("rules", [])}


def build(app: FastAPI, request: Request) -> dict[str, Any]:
    recipe, recipes = recipe_of(app, request)
    cur = app.state.cache.cursor()
    if cur is None or recipe is None:
        return {"recipes": recipes, "recipe": recipe, "empty": "no selection yet: run `flywheel select`"}
    reasons = app.state.cache.aggregates.get("reasons", {}).get(recipe, {})
    reason = request.query_params.get("reason") or (max(reasons, key=reasons.get) if reasons else None)
    try:
        page = max(0, int(request.query_params.get("page", "0")))
    except ValueError as exc:
        raise HTTPException(400, "page must be a number") from exc
    rules = _rules(app, recipe)
    rule = rules.get(reason or "", {})
    column = rule.get("column")
    items: list[dict[str, Any]] = []
    if reason is not None:
        start, count = app.state.cache.aggregates.get("gallery", {}).get(f"{recipe}/{reason}", [0, 0])
        lo = start + page * PAGE
        hi = min(start + count, lo + PAGE) - 1
        got = cur.execute("SELECT * FROM gallery WHERE rn BETWEEN ? AND ? ORDER BY rn", [lo, hi])
        names = [d[0] for d in got.description]
        for row in got.fetchall():
            rec = dict(zip(names, row, strict=True))
            rec["value"] = rec.get(column) if column else None
            items.append(rec)
    total = reasons.get(reason, 0) if reason else 0
    return {
        "recipes": recipes,
        "recipe": recipe,
        "reasons": reasons,
        "reason": reason,
        "rule": rule,
        "column": column,
        "items": items,
        "page": page,
        "pages": (total + PAGE - 1) // PAGE,
        "total": total,
    }


VIEW = View("rejected", "Rejected gallery", build, template="gallery.html")


def register_sample(app: FastAPI) -> None:
    from dashboards.app import render

    @app.get("/data/sample/{sample_id}", response_class=HTMLResponse)
    def sample(request: Request, sample_id: str, user: Engineer) -> HTMLResponse:
        rec = app.state.cache.sample(sample_id)
        if rec is None:
            raise HTTPException(404, "no pool sample with this id")
        recipe, _ = recipe_of(app, request)
        why: list[tuple[str, str]] = []
        if recipe:
            cur = app.state.cache.cursor()
            row = cur.execute(
                "SELECT reasons FROM why WHERE id = ? AND recipe = ? LIMIT 1", [sample_id, recipe]
            ).fetchone()
            rules = _rules(app, recipe)
            why = [(r, rules.get(r, {}).get("why", "")) for r in (row[0] if row else [])]
        return render(request, "sample.html", {"rec": rec, "recipe": recipe, "why": why})
