"""Who may reach what: anonymous refused, roles enforced, CSRF required, images only by id or hash."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from flywheel.workspace import Workspace
from tests.dashboards.conftest import csrf_of

GETS = [
    "/",
    "/triage",
    "/case/{case}",
    "/case/{case}/neighbours",
    "/img/case/{image}/thumb",
    "/img/pool/{pool}/thumb",
    "/data",
    "/data/funnel",
    "/data/histograms",
    "/data/rejected",
    "/data/categories",
    "/data/embedding",
    "/data/badcases",
    "/data/training",
    "/data/evaluations",
    "/data/sample/{pool}",
    "/admin/users",
]
POSTS = [
    "/case/{case}/decide",
    "/undo",
    "/case/{case}/claim",
    "/case/{case}/release",
    "/assign",
    "/admin/users",
    "/logout",
]
ENGINEER_ONLY = [p for p in GETS if p.startswith("/data")]
ADMIN_ONLY = ["/admin/users"]


@pytest.fixture(scope="module")
def ws(workspace_template, tmp_path_factory) -> Workspace:
    """One copy for the whole module: these tests read, or write nothing another test here checks."""
    import shutil

    dst = tmp_path_factory.mktemp("access") / "ws"
    shutil.copytree(workspace_template, dst)
    return Workspace.at(dst)


@pytest.fixture()
def ids(app) -> dict[str, str]:
    case = app.state.store.list()[0]
    pool = app.state.cache.cursor().execute("SELECT id FROM pool WHERE broken_reason IS NULL LIMIT 1").fetchone()[0]
    return {"case": case["case_id"], "image": case["output_image"], "pool": pool}


@pytest.mark.parametrize("path", GETS)
def test_anonymous_get_is_refused(app, ids, path):
    client = TestClient(app)
    resp = client.get(path.format(**ids), headers={"accept": "text/html"}, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"].startswith("/login")
    assert client.get(path.format(**ids), headers={"accept": "application/json"}).status_code == 401


@pytest.mark.parametrize("path", [p for p in POSTS if p != "/logout"])
def test_anonymous_post_is_refused(app, ids, path):
    client = TestClient(app)
    token = csrf_of(client)
    resp = client.post(path.format(**ids), data={"csrf": token, "track": "rl"}, follow_redirects=False)
    assert resp.status_code == 401


@pytest.mark.parametrize("path", GETS)
def test_every_page_answers_for_admin(login, ids, path):
    resp = login("root").get(path.format(**ids), follow_redirects=False)
    assert resp.status_code in (200, 303), resp.text[:300]
    if path.startswith("/img"):
        assert resp.headers["content-type"] == "image/jpeg" and resp.content[:2] == b"\xff\xd8"


@pytest.mark.parametrize("path", ENGINEER_ONLY + ADMIN_ONLY)
def test_annotator_cannot_reach_engineer_or_admin_pages(login, ids, path):
    assert login("ann").get(path.format(**ids)).status_code == 403


def test_engineer_cannot_reach_admin_actions(login, ids):
    eng = login("eng")
    assert eng.get("/data/funnel").status_code == 200
    assert eng.get("/admin/users").status_code == 403
    resp = eng.post("/admin/users", data={"csrf": eng.csrf, "name": "mallory", "role": "admin", "password": "x" * 10})
    assert resp.status_code == 403


def test_annotator_cannot_add_users_or_assign(login, app, ids):
    ann = login("ann")
    resp = ann.post("/admin/users", data={"csrf": ann.csrf, "name": "mallory", "role": "admin", "password": "x" * 10})
    assert resp.status_code == 403 and app.state.users.get("mallory") is None
    resp = ann.post("/assign", data={"csrf": ann.csrf, "assignee": "ann", "case_ids": [ids["case"]]})
    assert resp.status_code == 403


def test_admin_adds_a_user_who_can_log_in(login, app):
    admin = login("root")
    resp = admin.post(
        "/admin/users", data={"csrf": admin.csrf, "name": "newbie", "role": "annotator", "password": "p" * 12}
    )
    assert resp.status_code == 200 and "newbie" in resp.text
    assert app.state.users.verify("newbie", "p" * 12) is not None
    bad = admin.post("/admin/users", data={"csrf": admin.csrf, "name": "x", "role": "boss", "password": "p" * 12})
    assert bad.status_code == 400 and "role" in bad.text


@pytest.mark.parametrize("path", POSTS)
def test_post_without_or_with_wrong_csrf_is_refused(login, ids, path):
    client = login("root")
    data = {"track": "rl", "assignee": "ann", "case_ids": [ids["case"]], "name": "z", "role": "annotator"}
    assert client.post(path.format(**ids), data=data).status_code == 403
    assert client.post(path.format(**ids), data={**data, "csrf": "forged"}).status_code == 403
    assert client.post(path.format(**ids), data=data, headers={"x-csrf-token": "forged"}).status_code == 403


def test_login_refuses_wrong_password_and_csrf(app):
    client = TestClient(app)
    token = csrf_of(client)
    resp = client.post("/login", data={"username": "ann", "password": "wrong password", "csrf": token})
    assert resp.status_code == 401
    resp = client.post("/login", data={"username": "ann", "password": "correct horse battery"})
    assert resp.status_code == 403
    assert client.get("/triage", headers={"accept": "application/json"}).status_code == 401


def test_tampered_session_cookie_is_anonymous(login, app):
    client = login("ann")
    cookie = client.cookies.get("flywheel_session")
    client.cookies.clear()
    client.cookies.set("flywheel_session", cookie[:-6] + ("AAAAAA" if not cookie.endswith("AAAAAA") else "BBBBBB"))
    assert client.get("/triage", headers={"accept": "application/json"}).status_code == 401


def test_login_does_not_redirect_off_site(app):
    client = TestClient(app)
    token = csrf_of(client)
    data = {"username": "ann", "password": "correct horse battery", "csrf": token, "next": "//evil.example/x"}
    resp = client.post("/login", data=data, follow_redirects=False)
    assert resp.status_code == 303 and resp.headers["location"] == "/"


TRAVERSALS = [
    "/img/case/..%2F..%2F..%2Fetc%2Fpasswd/full",
    "/img/case/../../badcases/badcases.sqlite/full",
    "/img/case/%2Fetc%2Fpasswd/thumb",
    "/img/case/%252e%252e%252fetc%252fpasswd/thumb",
    "/img/pool/..%2F..%2Fpool%2Fpart-00000.parquet/full",
    "/img/pool/%2Fetc%2Fpasswd/full",
    "/img/case/{missing}/thumb",
    "/img/pool/{missing_pool}/thumb",
    "/img/case/{image}/..%2F..%2Fbadcases.sqlite",
    "/static/../badcases/badcases.sqlite",
    "/static/..%2F..%2F..%2Fetc%2Fpasswd",
    "/static/%2Fetc%2Fpasswd",
    "/static//etc/passwd",
    "/data/sample/..%2F..%2Fetc%2Fpasswd",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_paths_never_return_a_file(login, ids, path):
    client = login("root")
    url = path.format(**ids, missing="0" * 64, missing_pool="f" * 32)
    resp = client.get(url)
    assert resp.status_code in (400, 404, 405), (url, resp.status_code)
    assert b"root:" not in resp.content and b"SQLite" not in resp.content and b"PAR1" not in resp.content


def test_image_hash_must_belong_to_a_case(login, app, ws):
    # A file in the image store that no case references is not served, even with a valid hash.
    from tests.images import encode, photo_like

    digest = app.state.store.put_image(encode(photo_like(32, 32, seed=999), "PNG"), "stray")
    assert login("root").get(f"/img/case/{digest}/thumb").status_code == 404


def test_thumbnails_are_generated_once_and_cached(login, ids, ws):
    client = login("root")
    first = client.get(f"/img/case/{ids['image']}/thumb")
    cached = list((ws.root / "dashboards" / "thumbs" / "case").rglob(f"{ids['image']}-thumb.jpg"))
    assert first.status_code == 200 and len(cached) == 1
    mtime = cached[0].stat().st_mtime_ns
    assert client.get(f"/img/case/{ids['image']}/thumb").content == first.content
    assert cached[0].stat().st_mtime_ns == mtime
    import io

    from PIL import Image

    assert max(Image.open(io.BytesIO(first.content)).size) <= 200


def test_broken_pool_image_is_a_placeholder(login, app):
    broken = app.state.cache.cursor().execute("SELECT id FROM pool WHERE broken_reason IS NOT NULL").fetchone()[0]
    resp = login("root").get(f"/img/pool/{broken}/thumb")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("image/svg+xml")
