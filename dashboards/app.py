"""The dashboard application: `create_app(workspace)` builds a FastAPI app over one workspace.

Pages are rendered on the server (Jinja2); the only JavaScript is dashboards/static/*.js, written here, so
the app works offline. Routes live in dashboards/triage.py (annotators), dashboards/views/ (data views,
one file per view) and here (login, users, images).
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from dashboards.auth import COOKIE, SESSION_HOURS, Admin, Annotator, NotLoggedIn, Sessions, check_csrf, current_user
from dashboards.cache import ViewCache
from dashboards.images import BROKEN_SVG, ImageNotFound, ImageService
from dashboards.neighbours import NeighbourFinder
from dashboards.users import ROLES, AccountError, UserStore, session_secret
from flywheel.badcases import BadCaseStore
from flywheel.badcases.triage import Triage
from flywheel.workspace import Workspace

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200) -> HTMLResponse:
    """Render a page with the user, CSRF token and navigation every template needs."""
    from dashboards.views import VIEWS

    ctx = {
        "user": current_user(request),
        "csrf": request.state.session["c"],
        "views": VIEWS,
        **context,
    }
    return templates.TemplateResponse(request, name, ctx, status_code=status_code)


def create_app(
    workspace: str | Path, *, neighbours: NeighbourFinder | None = None, secure_cookies: bool = False
) -> FastAPI:
    """The app for one workspace. `neighbours` replaces the retrieval lookup (tests pass a small one)."""
    ws = Workspace.at(workspace)
    store = BadCaseStore.for_workspace(ws.root)
    users = UserStore(ws.root)
    app = FastAPI(
        title="Flywheel dashboard", dependencies=[Depends(check_csrf)], docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.ws = ws
    app.state.store = store
    app.state.triage = Triage(store)
    app.state.users = users
    app.state.sessions = Sessions(session_secret(ws.root), users)
    app.state.images = ImageService(ws.root, store)
    app.state.cache = ViewCache(ws)
    app.state.neighbours = neighbours or NeighbourFinder(ws)
    app.state.memo = {}
    app.state.memo_lock = threading.Lock()
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    @app.middleware("http")
    async def sessions(request: Request, call_next: Any) -> Response:
        session = app.state.sessions.load(request)
        request.state.session = session
        response = await call_next(request)
        if session["new"] or session.get("changed"):
            response.set_cookie(
                COOKIE,
                app.state.sessions.dump(session),
                max_age=SESSION_HOURS * 3600,
                httponly=True,
                samesite="strict",
                secure=secure_cookies,
            )
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.exception_handler(NotLoggedIn)
    async def not_logged_in(request: Request, exc: NotLoggedIn) -> Response:
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?{urlencode({'next': target})}", status_code=303)
        return JSONResponse({"detail": "log in first"}, status_code=401)

    # --- login --------------------------------------------------------------------------------------------
    @app.get("/login", response_class=HTMLResponse)
    def login_page(request: Request, next: str = "/") -> HTMLResponse:
        return render(request, "login.html", {"next": _local(next), "error": None})

    @app.post("/login")
    def login(
        request: Request,
        username: Annotated[str, Form()],
        password: Annotated[str, Form()],
        next: Annotated[str, Form()] = "/",
    ) -> Response:
        user = users.verify(username, password)
        if user is None:
            return render(request, "login.html", {"next": _local(next), "error": "wrong name or password"}, 401)
        session = request.state.session
        session.update(u=user.name, c=secrets.token_urlsafe(24), changed=True)  # new token per login
        return RedirectResponse(_local(next), status_code=303)

    @app.post("/logout")
    def logout(request: Request) -> Response:
        request.state.session.update(u=None, changed=True)
        return RedirectResponse("/login", status_code=303)

    @app.get("/")
    def home(user: Annotator) -> Response:
        return RedirectResponse("/triage", status_code=303)

    # --- users (admin) ------------------------------------------------------------------------------------
    @app.get("/admin/users", response_class=HTMLResponse)
    def users_page(request: Request, user: Admin) -> HTMLResponse:
        return render(request, "users.html", {"users": users.list(), "roles": ROLES, "error": None})

    @app.post("/admin/users")
    def add_user(
        request: Request,
        name: Annotated[str, Form()],
        role: Annotated[str, Form()],
        password: Annotated[str, Form()],
        user: Admin,
    ) -> Response:
        try:
            users.add(name, role, password)
        except AccountError as exc:
            return render(request, "users.html", {"users": users.list(), "roles": ROLES, "error": str(exc)}, 400)
        return RedirectResponse("/admin/users", status_code=303)

    # --- images -------------------------------------------------------------------------------------------
    def image_response(data: bytes | None) -> Response:
        if data is None:
            return Response(BROKEN_SVG, media_type="image/svg+xml")
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=86400"})

    @app.get("/img/case/{digest}/{size}")
    def case_image(digest: str, size: str, user: Annotator) -> Response:
        try:
            return image_response(app.state.images.case_image(digest, size))
        except ImageNotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    @app.get("/img/pool/{sample_id}/{size}")
    def pool_image(sample_id: str, size: str, user: Annotator, source: bool = False) -> Response:
        try:
            partition = app.state.cache.partition_of(sample_id) if len(sample_id) == 32 else None
            return image_response(app.state.images.pool_image(sample_id, partition, size, source=source))
        except ImageNotFound as exc:
            raise HTTPException(404, str(exc)) from exc

    from dashboards import triage as triage_routes
    from dashboards import views as view_routes

    triage_routes.register(app)
    view_routes.register(app)
    return app


def _local(target: str) -> str:
    """Only same-site paths are followed after login (no open redirect to another host)."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
