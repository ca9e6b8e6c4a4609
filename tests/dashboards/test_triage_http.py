"""Triage over HTTP: queue filters, case page contents, decide/undo/bulk/claims/assignment, concurrency."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from dashboards.app import create_app
from dashboards.neighbours import NeighbourFinder
from tests.dashboards.conftest import N_CASES, PASSWORD, HashedWords, csrf_of

JSON = {"accept": "application/json"}


def test_queue_filters(login, app):
    client = login("ann")
    page = client.get("/triage")
    assert page.status_code == 200 and f"{N_CASES} case(s)" in page.text
    assert "140 case(s)" in client.get("/triage?source=feedback").text
    assert "210 case(s)" in client.get("/triage?tag=low_quality").text
    assert "210 case(s)" in client.get("/triage?checkpoint=stage1/step-0000010").text
    assert "200 case(s)" in client.get("/triage?track=pretrain").text
    assert "220 case(s)" in client.get("/triage?track=unrouted").text
    assert "0 case(s)" in client.get("/triage?mine=1").text
    assert client.get("/triage?source=elsewhere").status_code == 400


def test_case_page_shows_evidence_images_and_neighbours(login, app):
    client = login("ann")
    case = next(c for c in app.state.store.list() if c["input_image"] and c["evidence"])
    page = client.get(f"/case/{case['case_id']}")
    assert page.status_code == 200
    text = page.text
    assert case["prompt"] in text and "Instruction" in text  # a TI2I case says instruction
    assert f"/img/case/{case['input_image']}/full" in text and f"/img/case/{case['output_image']}/full" in text
    assert "uncovered_concept" in text and "p = 0.81" in text and "label_prob" in text
    assert "<th>curated_top_sim</th><td>0.3</td><td> &le; 0.5</td>" in text
    assert "claiming" in text  # a GET claims nothing; the page's script POSTs the claim
    assert app.state.triage.holder(case["case_id"]) is None
    claim = client.post(f"/case/{case['case_id']}/claim", data={"csrf": client.csrf})
    assert claim.json()["claimed_by"] == "ann" and "claimed by you" in client.get(f"/case/{case['case_id']}").text
    nb = client.get(f"/case/{case['case_id']}/neighbours").text
    assert nb.count("/img/pool/") >= 2 and "curated" in nb and case["expected_label"] in nb


def test_decide_undo_and_history(login, app):
    client = login("ann")
    store = app.state.store
    cid = store.list()[5]["case_id"]
    client.get(f"/case/{cid}")
    resp = client.post(
        f"/case/{cid}/decide", data={"csrf": client.csrf, "track": "rl", "note": "wrong count"}, headers=JSON
    )
    assert resp.status_code == 200 and resp.json()["next"].startswith("/case/")
    case = store.get(cid)
    assert case["track"] == "rl" and case["track_by"] == "annotator:ann"
    assert case["decisions"][-1]["note"] == "wrong count" and case["decisions"][-1]["by"] == "ann"
    assert "wrong count" in client.get(f"/case/{cid}").text
    undone = client.post("/undo", data={"csrf": client.csrf}).json()
    assert undone["undone"]["case_id"] == cid and store.get(cid)["track"] == "pretrain"
    assert "undone by ann" in client.get(f"/case/{cid}").text
    assert client.post("/undo", data={"csrf": client.csrf}).json()["undone"] is None
    bad = client.post(f"/case/{cid}/decide", data={"csrf": client.csrf, "track": "nonsense"}, headers=JSON)
    assert bad.status_code == 400
    assert client.post("/case/doesnotexist/decide", data={"csrf": client.csrf, "track": "rl"}).status_code == 400


def test_claims_keep_two_annotators_apart(login, app):
    a, b = login("ann0"), login("ann1")
    cid = app.state.store.list()[7]["case_id"]
    assert a.post(f"/case/{cid}/claim", data={"csrf": a.csrf}).status_code == 200
    assert b.post(f"/case/{cid}/claim", data={"csrf": b.csrf}).status_code == 409
    assert b.post(f"/case/{cid}/claim").status_code == 403  # no CSRF token
    page_b = b.get(f"/case/{cid}").text
    assert "claimed by ann0" in page_b and "read-only" in page_b
    refused = b.post(f"/case/{cid}/decide", data={"csrf": b.csrf, "track": "rl"}, headers=JSON)
    assert refused.status_code == 409
    assert a.post(f"/case/{cid}/release", data={"csrf": a.csrf}).json()["released"] is True
    ok = b.post(f"/case/{cid}/decide", data={"csrf": b.csrf, "track": "dismiss"}, headers=JSON)
    assert ok.status_code == 200 and app.state.store.get(cid)["track"] == "dismiss"


def test_bulk_decision_for_same_prompt(login, app):
    client = login("ann")
    same = [c for c in app.state.store.list() if c["prompt"] == "a cat on a table"]
    assert len(same) == 4
    page = client.get(f"/case/{same[0]['case_id']}").text
    assert "all 3 other undecided" in page
    resp = client.post(
        f"/case/{same[0]['case_id']}/decide",
        data={"csrf": client.csrf, "track": "prompt", "bulk": "true"},
        headers=JSON,
    )
    assert len(resp.json()["decisions"]) == 4
    assert {app.state.store.get(c["case_id"])["track"] for c in same} == {"prompt"}


def test_assignment_and_assigned_to_me(login, app):
    eng, ann = login("eng"), login("ann")
    cids = [c["case_id"] for c in app.state.store.list()[:3]]
    resp = eng.post("/assign", data={"csrf": eng.csrf, "assignee": "ann", "case_ids": cids}, headers=JSON)
    assert resp.json() == {"assigned": 3}
    mine = ann.get("/triage?mine=1").text
    assert "3 case(s)" in mine and all(c in mine for c in cids)
    assert eng.post("/assign", data={"csrf": eng.csrf, "assignee": "ghost", "case_ids": cids}).status_code == 400


def test_keyboard_navigation_links_follow_the_filter(login, app):
    client = login("ann")
    rows = [c for c in app.state.store.list() if c["source"] == "mining"]
    page = client.get(f"/case/{rows[1]['case_id']}?source=mining").text
    assert f'data-next="{rows[2]["case_id"]}"' in page and f'data-prev="{rows[0]["case_id"]}"' in page


def test_concurrent_annotators_lose_no_decision(ws):
    """8 annotators, each with their own session and thread, decide 50 distinct cases each over HTTP."""
    app = create_app(ws.root, neighbours=NeighbourFinder(ws, HashedWords()))
    store = app.state.store
    cases = [c["case_id"] for c in store.list()][:400]
    before = len(store.decisions())
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def annotate(i: int) -> None:
        with TestClient(app) as client:
            token = csrf_of(client)
            client.post("/login", data={"username": f"ann{i}", "password": PASSWORD, "csrf": token})
            token = csrf_of(client)
            barrier.wait()
            for k, cid in enumerate(cases[i * 50 : (i + 1) * 50]):
                track = ("rl", "pretrain", "prompt", "dismiss")[k % 4]
                resp = client.post(f"/case/{cid}/decide", data={"csrf": token, "track": track}, headers=JSON)
                if resp.status_code != 200:
                    errors.append(f"{cid}: {resp.status_code} {resp.text[:100]}")

    threads = [threading.Thread(target=annotate, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    decisions = store.decisions()[before:]
    assert len(decisions) == 400 and len({d["case_id"] for d in decisions}) == 400
    for i in range(8):
        mine = {d["case_id"] for d in decisions if d["by"] == f"ann{i}"}
        assert mine == set(cases[i * 50 : (i + 1) * 50])
    assert all(store.get(c)["track_by"].startswith("annotator:") for c in cases)
