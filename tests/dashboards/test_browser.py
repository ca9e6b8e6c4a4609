"""A real browser (Playwright driving Debian's chromium) against the dashboard served on a loopback port.

Logs an annotator in, triages five cases with the keyboard only, checks the store, then opens the funnel
view as an engineer and checks that one bar per rule is drawn. Screenshots go to docs/img/ (the README
shows them). `playwright install` cannot download here: scripts/install.sh installs the `chromium` package.
"""

from __future__ import annotations

import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dashboards.app import create_app
from dashboards.neighbours import NeighbourFinder
from tests.dashboards.conftest import PASSWORD, HashedWords

playwright_sync = pytest.importorskip("playwright.sync_api", reason="playwright is a dev dependency")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DOCS_IMG = Path(__file__).resolve().parents[2] / "docs" / "img"
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian `chromium` is not installed (scripts/install.sh)")


@pytest.fixture()
def server(ws) -> Iterator[tuple[str, object]]:
    import uvicorn

    app = create_app(ws.root, neighbours=NeighbourFinder(ws, HashedWords()))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert srv.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}", app
    srv.should_exit = True
    thread.join(timeout=10)


def _login(page, base: str, name: str) -> None:
    page.goto(f"{base}/login")
    page.fill("#username", name)
    page.fill("#password", PASSWORD)
    page.press("#password", "Enter")
    page.wait_for_url(f"{base}/triage")


def test_keyboard_triage_and_funnel_chart(server):
    base, app = server
    store = app.state.store
    queue = [c["case_id"] for c in store.list() if c["source"] == "feedback"]
    DOCS_IMG.mkdir(parents=True, exist_ok=True)
    with playwright_sync.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_context(viewport={"width": 1280, "height": 1000}).new_page()
            _login(page, base, "ann")
            page.goto(f"{base}/case/{queue[0]}?source=feedback&undecided=1")
            page.wait_for_selector("#neighbours figure")
            page.wait_for_function("document.getElementById('claim').textContent.startsWith('claimed by you')")
            assert app.state.triage.holder(queue[0])[0] == "ann"
            page.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            page.screenshot(path=str(DOCS_IMG / "triage.png"), full_page=True)
            keys = ["1", "2", "3", "4", "1"]
            for i, key in enumerate(keys):
                assert page.get_attribute("#case", "data-case") == queue[i]
                if i == 2:  # a note typed after `n`, sent with the decision
                    page.keyboard.press("n")
                    page.keyboard.type("count is wrong")
                    page.keyboard.press("Escape")
                with page.expect_navigation():
                    page.keyboard.press(key)
            assert page.get_attribute("#case", "data-case") == queue[5]
            page.keyboard.press("u")  # undo the last decision: back to the fifth case, undecided again
            page.wait_for_url(f"**/case/{queue[4]}**")
            with page.expect_navigation():
                page.keyboard.press("4")

            tracks = {"1": "rl", "2": "pretrain", "3": "prompt", "4": "dismiss"}
            expected = [tracks[k] for k in ["1", "2", "3", "4", "4"]]
            got = [store.get(cid) for cid in queue[:5]]
            assert [c["track"] for c in got] == expected
            assert all(c["track_by"] == "annotator:ann" for c in got)
            assert got[2]["decisions"][-1]["note"] == "count is wrong"
            assert got[4]["decisions"][0]["undone_by"] == "ann"

            eng = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
            _login(eng, base, "eng")
            eng.goto(f"{base}/data/funnel")
            bars = eng.locator("svg.bars rect.bar")
            import json

            rules = json.loads(app.state.ws.funnel_path("tiny").read_text())["rules"]
            assert bars.count() == len(rules)
            assert [bars.nth(i).get_attribute("data-label") for i in range(bars.count())] == [r["name"] for r in rules]
            for i, rule in enumerate(rules):
                box = bars.nth(i).bounding_box()
                assert box is not None and box["width"] > 0 and (box["height"] > 0) == (rule["removed"] > 0)
            eng.screenshot(path=str(DOCS_IMG / "funnel.png"), full_page=True)
            eng.goto(f"{base}/data/rejected?reason=entropy")
            eng.wait_for_function("Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
            eng.screenshot(path=str(DOCS_IMG / "rejected.png"), full_page=True)
        finally:
            browser.close()
    assert (DOCS_IMG / "triage.png").stat().st_size > 10_000 and (DOCS_IMG / "funnel.png").stat().st_size > 5_000
