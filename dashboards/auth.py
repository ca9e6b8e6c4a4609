"""Sessions, CSRF and roles for the dashboard.

The session is a cookie signed with the workspace's secret (itsdangerous): it carries the user name and a
random CSRF token, nothing else, and expires after SESSION_HOURS. Every request that is not GET/HEAD must
echo that token (form field `csrf` or header `X-CSRF-Token`), so a page from another site cannot make a
logged-in annotator's browser decide cases. The cookie is HttpOnly and SameSite=Strict as a second net.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from itsdangerous import BadSignature, URLSafeTimedSerializer

from dashboards.users import ROLES, User, UserStore
from flywheel.errors import UserError

COOKIE = "flywheel_session"
SESSION_HOURS = 12
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class NotLoggedIn(UserError):
    """Raised by `require` for anonymous requests: pages redirect to /login, other requests get 401."""


class Sessions:
    def __init__(self, secret: bytes, users: UserStore) -> None:
        self.signer = URLSafeTimedSerializer(secret, salt="flywheel-dashboard-session")
        self.users = users

    def load(self, request: Request) -> dict[str, Any]:
        """The request's session (a fresh anonymous one with a new CSRF token when absent or tampered)."""
        raw = request.cookies.get(COOKIE)
        if raw:
            try:
                data = self.signer.loads(raw, max_age=SESSION_HOURS * 3600)
                if isinstance(data, dict) and isinstance(data.get("c"), str):
                    return {"u": data.get("u"), "c": data["c"], "new": False}
            except BadSignature:
                pass
        return {"u": None, "c": secrets.token_urlsafe(24), "new": True}

    def dump(self, session: dict[str, Any]) -> str:
        return self.signer.dumps({"u": session.get("u"), "c": session["c"]})


def session_of(request: Request) -> dict[str, Any]:
    return request.state.session


def current_user(request: Request) -> User | None:
    name = session_of(request).get("u")
    if not name:
        return None
    user = request.app.state.users.get(name)  # a deleted or re-roled user takes effect at once
    return user


def require(role: str) -> Callable[[Request], User]:
    """FastAPI dependency: the logged-in user, who must hold `role` or a higher one."""
    if role not in ROLES:
        raise ValueError(role)

    def dependency(request: Request) -> User:
        user = current_user(request)
        if user is None:
            raise NotLoggedIn()
        if not user.may(role):
            raise HTTPException(status_code=403, detail=f"this needs the {role} role; you are {user.role}")
        return user

    return dependency


async def check_csrf(request: Request) -> None:
    """App-wide dependency: refuse any state-changing request whose CSRF token does not match the session."""
    if request.method in SAFE_METHODS:
        return
    expected = session_of(request)["c"]
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()
        value = form.get("csrf")
        sent = value if isinstance(value, str) else None
    if session_of(request)["new"] or not sent or not hmac.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token; reload the page")


# Annotated dependencies, so route signatures read `user: Annotator` (and ruff's B008 stays meaningful).
Annotator = Annotated[User, Depends(require("annotator"))]
Engineer = Annotated[User, Depends(require("engineer"))]
Admin = Annotated[User, Depends(require("admin"))]
