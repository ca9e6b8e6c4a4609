"""Data views: one module per view, each defining `VIEW`; registered here once, served at /data/<slug>.

A view turns the workspace (through the cache of aggregates, the bad-case store or the run logs) into
sections of a page: a title, a server-drawn chart, a note and optionally a table. Adding a view is one file
with a `VIEW`, one line in `_MODULES`, and one test.
"""

from __future__ import annotations

import importlib

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from dashboards.auth import Engineer, require
from dashboards.views.base import View

_MODULES = (
    "funnel",
    "histograms",
    "rejected",
    "categories",
    "embedding",
    "badcases_over_time",
    "training",
    "evaluations",
    "turns",
)
VIEWS: list[View] = [importlib.import_module(f"dashboards.views.{m}").VIEW for m in _MODULES]


def register(app: FastAPI) -> None:
    from dashboards.app import render

    @app.get("/data", response_class=HTMLResponse)
    def index(request: Request, user: Engineer) -> HTMLResponse:
        return render(request, "data_index.html", {})

    for view in VIEWS:

        def page(request: Request, view: View = view) -> HTMLResponse:
            return render(request, view.template, {"view": view, **view.build(app, request)})

        app.add_api_route(
            f"/data/{view.slug}",
            page,
            methods=["GET"],
            response_class=HTMLResponse,
            name=view.slug,
            dependencies=[Depends(require(view.role))],
        )

    from dashboards.views.rejected import register_sample

    register_sample(app)
