"""What every data view shares: the View record and the recipe/selection helpers."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, HTTPException, Request

from flywheel.workspace import Workspace, WorkspaceError


@dataclass(frozen=True)
class View:
    slug: str
    title: str
    build: Callable[[FastAPI, Request], dict[str, Any]]  # -> template context
    template: str = "view.html"
    role: str = "engineer"


def recipe_of(app: FastAPI, request: Request) -> tuple[str | None, list[str]]:
    """The recipe a view shows (?recipe=, else the most recent selection) and all recipes."""
    ws: Workspace = app.state.ws
    recipes = ws.curated_recipes()
    wanted = request.query_params.get("recipe")
    if wanted:
        if wanted not in recipes:
            raise HTTPException(404, f"no selection {wanted!r} in this workspace")
        return wanted, recipes
    if not recipes:
        return None, recipes
    latest = max(recipes, key=lambda r: ws.funnel_path(r).stat().st_mtime)
    return latest, recipes


def read_json(ws: Workspace, recipe: str, name: str) -> dict[str, Any]:
    try:
        path = ws.selection_dir(recipe) / name
    except WorkspaceError as exc:
        raise HTTPException(404, str(exc)) from exc
    return json.loads(path.read_text()) if path.is_file() else {}
