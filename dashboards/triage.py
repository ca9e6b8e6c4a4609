"""Annotator routes: the queue, the case page, decisions (single and bulk), undo, claims and assignment.

Every write goes through flywheel.badcases.triage (the store's transactions), so decisions from many
browsers at once serialise in SQLite and none is lost. The case page's script claims the case (a POST, so
it carries the CSRF token like every other change); a case claimed by someone else is shown read-only with
who holds it and until when.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import FastAPI, Form, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from dashboards.auth import Annotator, Engineer
from dashboards.users import User
from flywheel.badcases import SOURCES, TRACKS, BadCaseError
from flywheel.badcases.triage import ClaimedError, QueueFilter
from flywheel.evaluation import FAILURE_TAGS

PAGE = 50
# Queue totals are cached this long (counting 100k cases costs tens of ms); this app's own writes clear them.
COUNT_TTL_S = 5.0
KEYS = {str(i): t for i, t in enumerate(TRACKS, 1)}  # registry order: 1 rl, 2 pretrain, 3 prompt, 4 dismiss


def _filter(request: Request, user: User) -> tuple[QueueFilter, dict[str, str]]:
    """The queue filter from the query string, and the same parameters to carry into links."""
    q = request.query_params
    params = {k: q[k] for k in ("track", "source", "tag", "checkpoint", "undecided", "mine") if q.get(k)}
    flt = QueueFilter(
        track=params.get("track"),
        source=params.get("source"),
        tag=params.get("tag"),
        checkpoint=params.get("checkpoint"),
        undecided=params.get("undecided") == "1",
        assigned_to=user.name if params.get("mine") == "1" else None,
    )
    try:
        flt.check()
    except BadCaseError as exc:
        raise HTTPException(400, str(exc)) from exc
    return flt, params


def register(app: FastAPI) -> None:
    from dashboards.app import render

    triage = app.state.triage
    store = app.state.store

    @app.get("/triage", response_class=HTMLResponse)
    def queue(request: Request, user: Annotator, page: Annotated[int, Query(ge=0)] = 0) -> HTMLResponse:
        flt, params = _filter(request, user)
        rows = triage.page(flt, limit=PAGE, offset=page * PAGE)
        total = _memo(app, f"count:{flt}", lambda: triage.count(flt), ttl=COUNT_TTL_S)
        return render(
            request,
            "queue.html",
            {
                "rows": rows,
                "total": total,
                "page": page,
                "pages": (total + PAGE - 1) // PAGE,
                "params": params,
                "qs": urlencode(params),
                "sources": SOURCES,
                "tracks": (*TRACKS, "unrouted"),
                "tags": FAILURE_TAGS,
                "checkpoints": _memo(app, "checkpoints", triage.checkpoints, ttl=60.0),
                "annotators": [u.name for u in app.state.users.list()],
            },
        )

    @app.get("/case/{case_id}", response_class=HTMLResponse)
    def case_page(request: Request, case_id: str, user: Annotator):
        flt, params = _filter(request, user)
        try:
            case = store.get(case_id)
            # A GET changes nothing: the page's script claims the case with a POST (CSRF-checked).
            claimed_by, claim_until = triage.holder(case_id) or (None, None)
            nxt = triage.neighbour(case_id, flt, step=1)
            prv = triage.neighbour(case_id, flt, step=-1)
        except BadCaseError as exc:
            raise HTTPException(404, str(exc)) from exc
        evidence = case.get("evidence") or {}
        return render(
            request,
            "case.html",
            {
                "case": case,
                "evidence": evidence,
                "features": {k: v for k, v in evidence.items() if isinstance(v, int | float) or v is None},
                "learned": evidence.get("learned"),
                "claimed_by": claimed_by,
                "claim_until": claim_until,
                "mine": claimed_by in (None, user.name),
                "next_id": nxt,
                "prev_id": prv,
                "qs": urlencode(params),
                "keys": KEYS,
                "same_prompt": triage.same_prompt_undecided(case_id),
            },
        )

    @app.get("/case/{case_id}/neighbours", response_class=HTMLResponse)
    def neighbours(request: Request, case_id: str, user: Annotator):
        try:
            case = store.get(case_id)
        except BadCaseError as exc:
            raise HTTPException(404, str(exc)) from exc
        return render(request, "neighbours.html", {"nb": app.state.neighbours.for_case(case)})

    @app.post("/case/{case_id}/decide")
    def decide(
        request: Request,
        case_id: str,
        track: Annotated[str, Form()],
        user: Annotator,
        note: Annotated[str, Form()] = "",
        bulk: Annotated[bool, Form()] = False,
    ) -> Response:
        try:
            ids = triage.decide(case_id, track, user.name, note.strip() or None, bulk=bulk)
            _forget_counts(app)
        except ClaimedError as exc:
            raise HTTPException(409, str(exc)) from exc
        except BadCaseError as exc:
            raise HTTPException(400, str(exc)) from exc
        flt, params = _filter(request, user)
        nxt = triage.neighbour(case_id, flt, step=1)
        body = {"decisions": ids, "next": f"/case/{nxt}?{urlencode(params)}" if nxt else f"/triage?{urlencode(params)}"}
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse(body)
        return RedirectResponse(body["next"], status_code=303)

    @app.post("/undo")
    def undo(request: Request, user: Annotator) -> Response:
        try:
            undone = triage.undo(user.name)
            _forget_counts(app)
        except BadCaseError as exc:
            raise HTTPException(409, str(exc)) from exc
        if undone is None:
            return JSONResponse({"undone": None, "detail": "nothing to undo"})
        return JSONResponse({"undone": undone, "case": f"/case/{undone['case_id']}"})

    @app.post("/case/{case_id}/claim")
    def claim(case_id: str, user: Annotator) -> Response:
        try:
            return JSONResponse({"claimed_by": user.name, "until": triage.claim(case_id, user.name)})
        except ClaimedError as exc:
            raise HTTPException(409, str(exc)) from exc
        except BadCaseError as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.post("/case/{case_id}/release")
    def release(case_id: str, user: Annotator) -> Response:
        return JSONResponse({"released": triage.release(case_id, user.name)})

    @app.post("/assign")
    def assign(
        request: Request,
        assignee: Annotated[str, Form()],
        case_ids: Annotated[list[str], Form()],
        user: Engineer,
    ) -> Response:
        if app.state.users.get(assignee) is None:
            raise HTTPException(400, f"no user {assignee!r}")
        try:
            n = triage.assign(case_ids, assignee, user.name)
            _forget_counts(app)
        except BadCaseError as exc:
            raise HTTPException(400, str(exc)) from exc
        if "application/json" in request.headers.get("accept", ""):
            return JSONResponse({"assigned": n})
        return RedirectResponse("/triage", status_code=303)


def _forget_counts(app: FastAPI) -> None:
    with app.state.memo_lock:
        for key in [k for k in app.state.memo if k.startswith("count:")]:
            del app.state.memo[key]


def _memo(app: FastAPI, key: str, compute: Any, ttl: float = 30.0) -> Any:
    """A value recomputed at most every `ttl` seconds (lists for the filter menus)."""
    import time

    now = time.monotonic()
    hit = app.state.memo.get(key)
    if hit is None or now - hit[0] > ttl:
        with app.state.memo_lock:
            hit = (now, compute())
            app.state.memo[key] = hit
    return hit[1]
